"""The matching threshold from the site's own footage, for a ReID model that comes without one.

A third-party model (an OSNet ONNX) has no stored similarity statistics, and a hand-set
``matching.threshold`` is a guess. The footage says what the model does here, without labels:

* crops of one tracklet are one person: each tracklet's crops are cut into pseudo-tracklets of
  ``crops_per_tracklet`` crops (as ``trainer.eval.similarity_stats`` cuts a labelled split), and
  two consecutive ones of a tracklet are a *same-person* pair;
* tracklets seen at the same time in one camera are different people (one camera never shows one
  person twice): a pseudo-tracklet completed while another tracklet of its camera has a box in the
  same frame pairs with that one's latest as a *different-person* pair. Crops are only taken of
  boxes others do not overlap (``reid.max_overlap``), so two tracks on one person give no pair.
  *Live* is not enough: a track the tracker lost is kept a few seconds in case its person comes
  back, and when a new track picks that person up instead, the two are one person. Such pairs
  (2-3 in 300 on the demo's tuning seeds) sit at the top of the different-person cosines and
  moved the 1 % quantile from 0.56 to 0.69.

The threshold is the cosine that only ``false_match_rate`` of the different-person pairs reach and
the engine's scale their standard deviation (:func:`core.pair_statistics.pair_statistics`, the
trainer's rule). Same-camera different-person pairs look more alike than cross-camera ones (same
light, same background), so the threshold errs towards keeping people apart; the same-person pairs
(same camera, seconds apart) only check that the two separate. The statistics are stored
(``matching.site_threshold.store``) with the model they were measured for, so the next start reads them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from core.embeddings import Embeddings, similarity, weighted_mean
from core.model_card import PairStatistics, SimilarityStatistics
from core.pair_statistics import camera_centered, pair_statistics
from edge.identity.records import Key

log = logging.getLogger("edge.identity.site_similarity")

MIN_SAME = 20  # same-person pairs needed besides the different-person ones


@dataclass
class _Track:
    camera: str
    crops: list[Embeddings] = field(default_factory=list)  # the pseudo-tracklet being filled
    last: Optional[int] = None  # index of its latest complete pseudo-tracklet


class SiteSimilarity:
    """Same/different-person pairs of pseudo-tracklets gathered crop by crop (see the module docstring)."""

    def __init__(self, false_match_rate: float = 0.01, min_pairs: int = 300, crops_per_tracklet: int = 4):
        self.false_match_rate = false_match_rate
        self.min_pairs = min_pairs
        self.crops_per_tracklet = crops_per_tracklet
        self.tracks: dict[Key, _Track] = {}
        self.pseudo: list[Embeddings] = []  # every complete pseudo-tracklet
        self.cameras: list[str] = []  # and its camera
        self.same: list[tuple[int, int]] = []  # pairs of indices into pseudo
        self.diff: list[tuple[int, int]] = []
        self.closed = False

    def close(self) -> None:
        """The threshold is set: gather nothing more and let what was gathered go."""
        self.closed = True
        self.tracks, self.pseudo, self.cameras = {}, [], []

    def add_crop(self, key: Key, camera: str, crop: Embeddings, beside: Collection[Key] = ()) -> None:
        """One crop (one row) of tracklet ``key``; ``beside``: the other tracklets of its camera with
        a box in the crop's frame (nothing once :meth:`close` d)."""
        if self.closed:
            return
        track = self.tracks.setdefault(key, _Track(camera))
        track.crops.append(crop)
        if len(track.crops) < self.crops_per_tracklet:
            return
        self.pseudo.append(weighted_mean(Embeddings.concat(track.crops), np.ones(len(track.crops))))
        self.cameras.append(camera)
        index = len(self.pseudo) - 1
        track.crops = []
        if track.last is not None:
            self.same.append((track.last, index))
        for other_key in beside:
            other = self.tracks.get(other_key)
            if other_key != key and other is not None and other.camera == camera and other.last is not None:
                self.diff.append((other.last, index))
        track.last = index

    def end(self, key: Key) -> None:
        """Tracklet ``key`` ended: it is no longer seen beside the others."""
        self.tracks.pop(key, None)

    @property
    def ready(self) -> bool:
        return len(self.diff) >= self.min_pairs and len(self.same) >= MIN_SAME

    def progress(self) -> str:
        return (
            f"{len(self.diff)}/{self.min_pairs} different-person pairs, {len(self.same)}/{MIN_SAME} same-person pairs"
        )

    def statistics(self) -> SimilarityStatistics:
        """What was gathered, as a model card's ``similarity``: raw-cosine statistics and threshold,
        ``centered`` the same with each camera's mean pseudo-tracklet taken out (what the engine's
        camera centering compares), ``mean`` the mean pseudo-tracklet (its prior). Raises
        :class:`~core.pair_statistics.NoSeparation` when they do not separate, ValueError with no
        pair of one kind."""
        if not self.same or not self.diff:
            raise ValueError(f"no pairs of one kind yet ({self.progress()})")
        looks = Embeddings.concat(self.pseudo)
        cams = np.array(self.cameras)
        out: SimilarityStatistics = {
            **self._pairs(looks, "this site's "),
            "false_match_rate": self.false_match_rate,
            "crops_per_tracklet": self.crops_per_tracklet,
            "split": "this site's footage: pseudo-tracklets of one tracklet (same), of one camera at once (different)",
        }
        out["centered"] = self._pairs(camera_centered(looks, cams), "this site's camera-centered ")
        out["mean"] = [round(float(v), 5) for v in looks.global_.mean(0)]
        return out

    def _pairs(self, looks: Embeddings, label: str) -> PairStatistics:
        sim = similarity(looks, looks)
        same, diff = np.array(self.same), np.array(self.diff)
        return pair_statistics(sim[same[:, 0], same[:, 1]], sim[diff[:, 0], diff[:, 1]], self.false_match_rate, label)


def store_statistics(path: Path, stats: SimilarityStatistics, model: str, false_match_rate: float) -> None:
    """Keep the site's statistics for the next start, with the model they belong to."""
    record = {"model_id": model, "false_match_rate": false_match_rate, "measured": time.strftime("%Y-%m-%d %H:%M")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps({**record, "statistics": stats}, indent=1))
        os.replace(partial, path)  # a run killed mid-write leaves the old file, not half a new one
    except OSError as exc:
        log.error(
            "matching: the learned statistics could not be kept in %s (%s): the next start learns again", path, exc
        )


def load_statistics(path: Path, model: str) -> Optional[dict[str, Any]]:
    """The stored statistics for ``model`` (None: no file, or measured for another model, said in a log line)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        stats = record["statistics"]
        float(stats["threshold"]), float(stats["diff_std"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a site similarity file ({exc})") from None
    if record.get("model_id") != model:
        log.warning("%s: measured for %s, not %s: learning this model's again", path, record.get("model_id"), model)
        return None
    return record
