"""Tracklets: what one camera knows about one tracked person, and when to spend an embedding.

A tracklet follows one local track id through active -> lost -> ended (ended once the tracker
would no longer recover it). Its appearance is a quality-weighted mean of the embeddings taken
so far. The embedding budget is decided here: a track is embedded when it is new, then at most
every ``embed_every_s`` seconds of media time, or earlier when a clearly better crop comes along
(larger, more confident, less overlapped) - never every frame. Seconds, not frames: a box that
processes a third of its frames would otherwise embed a third as often, and tracklets would end
"too short to match" (2 crops took 1.1 s at 10 fps and 3.3 s at 3 fps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from core.embeddings import Embeddings
from edge.identity.geometry import FloorTrack, Homography, foot_point
from edge.identity.records import TrackletSummary
from edge.reid.config import ReIDConfig
from edge.runtime.types import Frame, Track

ACTIVE, LOST, ENDED = "active", "lost", "ended"


def overlap_fraction(boxes: np.ndarray) -> np.ndarray:
    """For each xyxy box [N, 4], the largest share of its area covered by one other box."""
    n = len(boxes)
    if n < 2:
        return np.zeros(n, np.float32)
    b = np.asarray(boxes, np.float32)
    x0 = np.maximum(b[:, None, 0], b[None, :, 0])
    y0 = np.maximum(b[:, None, 1], b[None, :, 1])
    x1 = np.minimum(b[:, None, 2], b[None, :, 2])
    y1 = np.minimum(b[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = np.clip((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6, None)
    cover = inter / area[:, None]
    np.fill_diagonal(cover, 0.0)
    return cover.max(1)


def crop_quality(conf: float, height: float, overlap: float, reference_height: float = 128.0) -> float:
    """Higher for confident, large, unoverlapped crops; in (0, 1]."""
    return float(max(conf, 1e-3) * min(1.0, height / reference_height) * max(1.0 - overlap, 0.05))


@dataclass
class Tracklet:
    camera_id: str
    local_id: int
    first_seen: float
    last_seen: float
    first_frame: int
    last_frame: int
    xyxy: np.ndarray
    conf: float
    state: str = ACTIVE
    embedding: Optional[np.ndarray] = None
    weight: float = 0.0
    n_embeddings: int = 0
    last_embed_t: float = -float("inf")  # media time of the last crop taken into the mean
    last_quality: float = 0.0
    global_id: Optional[int] = None
    pending_rows: list = field(default_factory=list)  # MOT rows waiting for the final global id
    first_xyxy: Optional[np.ndarray] = None
    floor: Optional[FloorTrack] = None  # floor positions when the camera is calibrated
    _part_sum: Optional[np.ndarray] = None  # [P, Dp] sum of quality * conf * part feature
    _conf_sum: Optional[np.ndarray] = None  # [P] sum of quality * conf
    _appearance: Optional[tuple[int, Embeddings]] = None  # (n_embeddings it was built from, appearance)
    _unlike: int = 0  # crops in a row that looked like someone else (see looks_swapped)

    @property
    def key(self) -> tuple[str, int]:
        return self.camera_id, self.local_id

    def summary(self) -> TrackletSummary:
        """What the identity engine needs to know of this tracklet now."""
        return TrackletSummary(
            self.camera_id,
            self.local_id,
            self.first_seen,
            self.last_seen,
            self.appearance(),
            self.n_embeddings,
            self.weight,
            self.first_xyxy if self.first_xyxy is not None else self.xyxy,
            self.xyxy,
            self.floor,
            self.state == ENDED,
        )

    def appearance(self) -> Optional[Embeddings]:
        """The tracklet's appearance as one row of :class:`Embeddings` (with parts when it has them)."""
        if self.embedding is None:
            return None
        if self._appearance is None or self._appearance[0] != self.n_embeddings:  # rebuilt only after new evidence
            if self._part_sum is None or self._conf_sum is None:  # no parts (they come together)
                emb = Embeddings.normalized(self.embedding[None])
            else:
                emb = Embeddings.normalized(
                    self.embedding[None], self._part_sum[None], (self._conf_sum / max(self.weight, 1e-12))[None]
                )
            self._appearance = (self.n_embeddings, emb)
        return self._appearance[1]

    def looks_swapped(self, vector: np.ndarray, below: float, in_a_row: int = 2) -> bool:
        """Has the tracker swapped people? True when ``in_a_row`` new crops in a row each have a
        cosine below ``below`` to this tracklet's mean. One odd crop (occlusion, blur) is not a
        swap; crops that look unlike it are kept out of the mean either way."""
        if self.embedding is None or self.n_embeddings < 2:
            return False
        if float(np.dot(np.asarray(vector, np.float32).ravel(), self.embedding)) >= below:
            self._unlike = 0
            return False
        self._unlike += 1
        return self._unlike >= in_a_row

    def offer(
        self,
        vector: np.ndarray,
        quality: float,
        parts: Optional[np.ndarray] = None,
        part_conf: Optional[np.ndarray] = None,
        swap_below: Optional[float] = None,
    ) -> bool:
        """Take one crop's embedding, unless it looks like someone else. With ``swap_below``, an
        active tracklet keeps a crop below that cosine to its mean out of the mean until the next
        one tells whether it was a swap; True when it was (:meth:`looks_swapped`): the caller cuts
        the track, and the crop belongs to whoever comes next."""
        if swap_below is not None and self.state == ACTIVE:
            if self.looks_swapped(vector, swap_below):
                return True
            if self._unlike:
                return False
        self.add_embedding(vector, quality, parts, part_conf)
        return False

    def add_embedding(
        self,
        vector: np.ndarray,
        quality: float,
        parts: Optional[np.ndarray] = None,
        part_conf: Optional[np.ndarray] = None,
    ) -> None:
        """Fold one L2-normalised embedding into the running quality-weighted mean; part
        features (part-based models) fold per part, weighted by quality x part confidence."""
        if parts is not None:
            if part_conf is None:
                raise ValueError("parts and part_conf come together")
            self._part_sum = (self._part_sum if self._part_sum is not None else 0) + quality * part_conf[
                :, None
            ] * parts
            self._conf_sum = (self._conf_sum if self._conf_sum is not None else 0) + quality * np.asarray(
                part_conf, np.float32
            )
        v = np.asarray(vector, np.float32).ravel()
        total = self.embedding * self.weight if self.embedding is not None else np.zeros_like(v)
        self.weight += quality
        mean = (total + quality * v) / self.weight
        self.embedding = mean / max(float(np.linalg.norm(mean)), 1e-12)
        self.n_embeddings += 1
        self.last_embed_t = self.last_seen
        self.last_quality = quality


@dataclass
class EmbedRequest:
    tracklet: Tracklet
    xyxy: np.ndarray
    quality: float


@dataclass
class BudgetPolicy:
    """When a tracklet's crop is worth an embedding. The values (and their defaults) are the
    ``reid:`` section's (:class:`~edge.runtime.config.ReIDConfig`): :meth:`from_config`."""

    embed_every_s: float
    better_crop: float
    min_box_height: int
    max_overlap: float

    @classmethod
    def from_config(cls, reid: ReIDConfig, fps: float) -> BudgetPolicy:
        """A camera's budget in seconds of media time (``reid.embed_every`` in frames is the
        older form, read at the camera's rate ``fps``)."""
        every = reid.embed_every / fps if reid.embed_every else reid.embed_every_s
        return cls(every, reid.better_crop, reid.min_box_height, reid.max_overlap)

    def wants(self, t: Tracklet, height: float, overlap: float, quality: float) -> bool:
        if height < self.min_box_height or overlap > self.max_overlap:
            return False
        if t.n_embeddings == 0:
            return True
        if t.last_seen - t.last_embed_t >= self.embed_every_s - 1e-6:  # frame times are sums of 1/fps steps
            return True
        return quality >= self.better_crop * t.last_quality


class TrackletBook:
    """The tracklets of one camera. ``update`` returns (events, embedding requests)."""

    def __init__(
        self,
        camera_id: str,
        lost_s: float,
        policy: Optional[BudgetPolicy] = None,
        homography: Optional[Homography] = None,
    ):
        self.camera_id = camera_id
        self.lost_s = lost_s  # a lost tracklet ends after this much media time unseen (the tracker's buffer)
        self.policy = policy
        self.homography = homography
        self.tracklets: dict[int, Tracklet] = {}

    def update(
        self, tracks: list[Track], frame: Frame, embed: bool = True
    ) -> tuple[list[tuple[str, Tracklet]], list[EmbedRequest]]:
        """This frame's tracks -> lifecycle events and the crops worth embedding. ``embed=False``
        on frames whose boxes were carried, not detected: their crops are estimates."""
        events: list[tuple[str, Tracklet]] = []
        requests: list[EmbedRequest] = []
        boxes = np.array([t.xyxy for t in tracks], np.float32).reshape(-1, 4)
        overlaps = overlap_fraction(boxes)
        floor = floor_error = None
        if self.homography:
            feet = np.array([foot_point(b) for b in boxes]).reshape(-1, 2)
            floor, floor_error = self.homography.to_floor(feet), self.homography.floor_error_at(feet)
        seen = set()
        for i, (track, overlap) in enumerate(zip(tracks, overlaps)):
            t = self.tracklets.get(track.local_id)
            if t is None:
                t = Tracklet(
                    self.camera_id,
                    track.local_id,
                    frame.timestamp,
                    frame.timestamp,
                    frame.index,
                    frame.index,
                    track.xyxy,
                    track.conf,
                    first_xyxy=np.asarray(track.xyxy, np.float32).copy(),
                    floor=FloorTrack() if floor is not None else None,
                )
                self.tracklets[track.local_id] = t
                events.append(("new", t))
            elif t.state == LOST:
                events.append(("found", t))
            t.state = ACTIVE
            t.xyxy, t.conf, t.last_seen, t.last_frame = track.xyxy, track.conf, frame.timestamp, frame.index
            if floor is not None and floor_error is not None and t.floor is not None:  # calibrated: all have one
                t.floor.add(frame.timestamp, floor[i], float(floor_error[i]))
            seen.add(track.local_id)
            if self.policy is not None and embed:
                height = float(track.xyxy[3] - track.xyxy[1])
                quality = crop_quality(track.conf, height, float(overlap))
                if self.policy.wants(t, height, float(overlap), quality):
                    requests.append(EmbedRequest(t, track.xyxy, quality))
        for local_id, t in list(self.tracklets.items()):
            if local_id in seen:
                continue
            if t.state == ACTIVE:
                t.state = LOST
                events.append(("lost", t))
            elif frame.timestamp - t.last_seen > self.lost_s + 1e-6:  # frame times are sums of 1/fps steps
                t.state = ENDED
                events.append(("ended", t))
                del self.tracklets[local_id]
        return events, requests

    def end_all(self) -> list[tuple[str, Tracklet]]:
        events = []
        for t in self.tracklets.values():
            t.state = ENDED
            events.append(("ended", t))
        self.tracklets.clear()
        return events
