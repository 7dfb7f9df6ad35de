"""What the operator's view knows: identities, their recent sightings, cameras and stats, bounded.

:class:`ViewState` is fed raw multipart messages (:meth:`ViewState.ingest`) by a live subscriber
or a replay, and read by the web server as a full state (:meth:`ViewState.full`) or as what
changed since a version (:meth:`ViewState.delta`). Every collection has a bound, so a day of
events, or a flood of them, holds the same memory as a few minutes:

- identities: ``max_identities`` (the longest-untouched are forgotten first);
- sightings (one per tracklet: camera, local id, time span, crop, floor track): the newest
  ``sightings_per_identity`` of each identity, ``floor_points`` floor samples each;
- crops: ``max_crops`` JPEGs and ``max_crop_bytes`` bytes in all (oldest first out);
- cameras: the latest preview frame of each, at most ``max_cameras``.

A message of another schema (or version) is dropped with a banner and one log line per kind; a
malformed one is dropped and counted. Times shown are the publisher's (scene times for
``first_seen`` / ``last_seen``, ``publish_ts`` for latency); ``clock`` is the view's own (wall
time live, the recorded time in a replay) and decides what is live and what is down.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from edge.wire.publisher import SCHEMA, SCHEMA_VERSION

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = (1, SCHEMA_VERSION)


@dataclass
class Limits:
    max_identities: int = 500
    sightings_per_identity: int = 20
    floor_points: int = 60
    notes_per_identity: int = 8
    max_crops: int = 3000
    max_crop_bytes: int = 32 * 1024 * 1024
    max_cameras: int = 64
    max_pending: int = 2000  # tracklets seen before their identity event, waiting for it
    live_s: float = 10.0  # an identity with an open tracklet touched this recently is live
    stale_s: float = 15.0  # a camera whose previews stopped this long is down; a silent publisher is flagged


@dataclass
class Sighting:
    camera: str
    local_id: int
    first_ts: float
    last_ts: float
    crop: Optional[int] = None
    ended: bool = False
    touched: float = 0.0  # view clock of the last event about it
    floor: deque = field(default_factory=deque)

    def as_dict(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "local_id": self.local_id,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "crop": self.crop,
            "ended": self.ended,
            "floor": [list(p) for p in self.floor],
        }


@dataclass
class Identity:
    global_id: int
    first_seen: Optional[float] = None
    last_seen: Optional[float] = None
    cameras: list = field(default_factory=list)
    sightings: list = field(default_factory=list)  # newest sightings_per_identity, ordered by first_ts
    crop: Optional[int] = None
    merged_into: Optional[int] = None
    merged_from: list = field(default_factory=list)
    expired: bool = False
    sealed: bool = False  # founded by a tracklet too short to match (a flicker): nothing will join it
    notes: deque = field(default_factory=deque)
    version: int = 0
    publish_ts: Optional[float] = None  # of the last event that changed it (the page measures delay with it)
    last_event: str = ""

    def active_until(self, live_s: float) -> float:
        """View-clock time until which this identity counts as live (0: not live)."""
        if self.merged_into is not None or self.expired:
            return 0.0
        open_touches = [s.touched for s in self.sightings if not s.ended]
        return max(open_touches) + live_s if open_touches else 0.0

    def card(self, live_s: float) -> dict[str, Any]:
        return {
            "global_id": self.global_id,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "cameras": list(self.cameras),
            "crop": self.crop,
            "merged_into": self.merged_into,
            "merged_from": list(self.merged_from),
            "expired": self.expired,
            "sealed": self.sealed,
            "notes": list(self.notes),
            "sightings": len(self.sightings),
            "active_until": self.active_until(live_s),
            "publish_ts": self.publish_ts,
            "last_event": self.last_event,
        }


@dataclass
class Camera:
    id: str
    frame_seq: int = 0  # previews received (the page asks for /frame/<id>?seq=N)
    jpeg: Optional[bytes] = None
    header: dict = field(default_factory=dict)
    frame_at: Optional[float] = None  # view clock of the latest preview
    preview_times: deque = field(default_factory=lambda: deque(maxlen=10))
    fps: Optional[float] = None  # the runtime's figure (stats event)
    down_for_s: Optional[float] = None  # the runtime's figure (stats event)
    behind: Optional[dict] = (
        None  # processed below its rate: {fps, rate, share} (stats event, edge/runtime/rate_watch.py)
    )
    detect_every: Optional[int] = None  # the governor's k: the detector on every k-th frame (stats event)
    stats_at: Optional[float] = None
    version: int = 0


class ViewState:
    """Bounded, thread-safe state of the view; ``clock`` is the view's notion of now."""

    def __init__(self, limits: Optional[Limits] = None, clock: Callable[[], float] = time.time):
        self.limits = limits or Limits()
        self.clock = clock
        self._lock = threading.Lock()
        self.version = 0
        self.identities: OrderedDict[int, Identity] = OrderedDict()  # least recently touched first
        self.where: dict[tuple[str, int], int] = {}  # tracklet -> identity holding its sighting
        self.crops: OrderedDict[int, bytes] = OrderedDict()
        self._crop_bytes = 0
        self._next_crop = 1
        self.cameras: OrderedDict[str, Camera] = OrderedDict()
        self.stats: dict[str, Any] = {}
        self.counters = {"received": 0, "malformed": 0, "foreign": 0, "seq_gaps": 0, "publisher_restarts": 0}
        self.schema_problem: Optional[str] = None
        self._foreign_seen: set = set()
        self._last_seq: Optional[int] = None
        self.last_message_at: Optional[float] = None
        self.connection: dict[str, Any] = {"state": "connecting", "since": None, "endpoint": None}
        # identities forgotten, with the version at which they went: a delta names them, so a
        # flood does not turn every update into the full state; older than the deque -> full
        self._removed: deque = deque(maxlen=10000)
        self._removed_horizon = 0  # versions at or below this may have lost removals from the deque
        # tracklets seen before they had an identity (the engine decides after a few embeddings):
        # their time span, floor track and end wait here for the identity event
        self._pending: OrderedDict[tuple[str, int], Sighting] = OrderedDict()
        self.mode = "live"

    # --- input ------------------------------------------------------------------------------
    def set_connection(self, state: str, endpoint: Optional[str] = None, since: Optional[float] = None) -> None:
        """``connected`` / ``disconnected`` / ``connecting`` / ``replay`` / ``replay finished``."""
        with self._lock:
            self.connection = {
                "state": state,
                "since": self.clock() if since is None else since,
                "endpoint": endpoint or self.connection.get("endpoint"),
            }
            self._bump()

    def ingest(self, parts: list[bytes]) -> bool:
        """One raw message; False when it was dropped (malformed or of another schema)."""
        with self._lock:
            self.counters["received"] += 1
            self.last_message_at = self.clock()
            try:
                topic, header = parts[0].decode(), json.loads(parts[1])
                if not isinstance(header, dict):
                    raise ValueError("header is not a JSON object")
            except (IndexError, UnicodeDecodeError, ValueError) as exc:
                return self._malformed(parts, exc)
            if header.get("schema") != SCHEMA or header.get("version") not in SUPPORTED_VERSIONS:
                self._foreign(header)
                return False
            jpeg = parts[-1] if "jpeg_bytes" in header and len(parts) > 2 else None
            try:
                self._sequence(header.get("seq"))
                kind = topic.split("/", 1)[0]
                if kind == "identity":
                    self._identity(header, jpeg)
                elif kind == "track":
                    self._track(header)
                elif kind == "frame":
                    self._frame(header, jpeg)
                elif kind == "stats":
                    self._stats(header)
                elif kind == "snapshot":
                    self._snapshot(header)
                # other topics of a known schema: ignored (a newer minor addition)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                return self._malformed(parts, exc)
            self._bump()
            return True

    def _malformed(self, parts: list[bytes], exc: Exception) -> bool:
        self.counters["malformed"] += 1
        if self.counters["malformed"] == 1:
            log.warning("malformed message dropped (%s: %s); further ones are only counted", type(exc).__name__, exc)
        self._bump()
        return False

    def _foreign(self, header: dict) -> None:
        self.counters["foreign"] += 1
        key = (str(header.get("schema")), str(header.get("version")))
        if key not in self._foreign_seen:
            self._foreign_seen.add(key)
            self.schema_problem = (
                f"the publisher sends {key[0]} version {key[1]}; this view reads {SCHEMA} "
                f"version {', '.join(map(str, SUPPORTED_VERSIONS))}: those messages are dropped"
            )
            log.error("%s", self.schema_problem)
        self._bump()

    def _sequence(self, seq: Any) -> None:
        if not isinstance(seq, int):
            return
        if self._last_seq is not None:
            if seq > self._last_seq + 1:
                self.counters["seq_gaps"] += seq - self._last_seq - 1
            elif seq <= self._last_seq:
                self.counters["publisher_restarts"] += 1
        self._last_seq = seq

    def _bump(self) -> None:
        self.version += 1

    # --- identities -------------------------------------------------------------------------
    def _get(self, gid: int, create: bool = True) -> Optional[Identity]:
        ident = self.identities.get(gid)
        if ident is None and create:
            ident = self.identities[gid] = Identity(gid)
            while len(self.identities) > self.limits.max_identities:
                self._forget(next(iter(self.identities)))
        if ident is not None:
            self.identities.move_to_end(gid)
            ident.version = self.version + 1
        return ident

    def _forget(self, gid: int) -> None:
        ident = self.identities.pop(gid)
        for s in ident.sightings:
            if self.where.get((s.camera, s.local_id)) == gid:
                del self.where[(s.camera, s.local_id)]
        if len(self._removed) == self._removed.maxlen:
            self._removed_horizon = self._removed[0][0]
        self._removed.append((self.version + 1, gid))

    def _add_crop(self, jpeg: Optional[bytes]) -> Optional[int]:
        if jpeg is None:
            return None
        cid, self._next_crop = self._next_crop, self._next_crop + 1
        self.crops[cid] = jpeg
        self._crop_bytes += len(jpeg)
        while self.crops and (len(self.crops) > self.limits.max_crops or self._crop_bytes > self.limits.max_crop_bytes):
            self._crop_bytes -= len(self.crops.popitem(last=False)[1])
        return cid

    def _sighting(self, ident: Identity, camera: str, local_id: int, ts: float) -> Sighting:
        """The identity's sighting of tracklet (camera, local_id), created when new."""
        for s in ident.sightings:
            if s.camera == camera and s.local_id == local_id:
                return s
        s = self._pending.pop((camera, local_id), None)
        if s is None:
            s = Sighting(camera, local_id, ts, ts, floor=deque(maxlen=self.limits.floor_points))
        s.first_ts, s.last_ts = min(s.first_ts, ts), max(s.last_ts, ts)
        self._attach(ident, s)
        return s

    def _attach(self, ident: Identity, s: Sighting) -> None:
        ident.crop = ident.crop or s.crop  # a card shows a crop whenever one of its sightings has one
        ident.sightings.append(s)
        ident.sightings.sort(key=lambda x: x.first_ts)
        while len(ident.sightings) > self.limits.sightings_per_identity:
            old = ident.sightings.pop(0)
            if self.where.get((old.camera, old.local_id)) == ident.global_id:
                del self.where[(old.camera, old.local_id)]
        if s in ident.sightings:
            self.where[(s.camera, s.local_id)] = ident.global_id
        self._refresh(ident)

    def _refresh(self, ident: Identity) -> None:
        if ident.sightings:
            first = min(s.first_ts for s in ident.sightings)
            ident.first_seen = first if ident.first_seen is None else min(ident.first_seen, first)
            last = max(s.last_ts for s in ident.sightings)
            ident.last_seen = last if ident.last_seen is None else max(ident.last_seen, last)
            ident.cameras = sorted(set(ident.cameras) | {s.camera for s in ident.sightings})

    def _note(self, ident: Identity, text: str) -> None:
        ident.notes.append(text)
        while len(ident.notes) > self.limits.notes_per_identity:
            ident.notes.popleft()

    def _identity(self, h: dict, jpeg: Optional[bytes]) -> None:
        kind, gid = h["event"], int(h["global_id"])
        now = self.clock()
        ident = self._get(gid)
        ident.publish_ts, ident.last_event = h.get("publish_ts"), kind
        if kind in ("new", "assigned", "reassigned"):
            ts = float(h.get("capture_ts", h.get("last_seen", 0.0)))
            key = (str(h["camera"]), int(h["local_id"]))
            previous = self.where.get(key)
            if kind == "reassigned" or (previous is not None and previous != gid):
                self._move(key, previous if previous is not None else h.get("from"), ident, h)
            s = self._sighting(ident, key[0], key[1], ts)
            s.last_ts, s.touched = max(s.last_ts, ts), now
            crop = self._add_crop(jpeg)
            if crop is not None:
                s.crop = s.crop or crop
                ident.crop = crop
        elif kind == "merged":
            source = self.identities.get(int(h["from"]))
            if source is not None and source is not ident:
                self._merge(source, ident)
            self._note(ident, f"#{h['from']} merged into this")
        elif kind == "expired":
            ident.expired = True
        if kind == "new" and h.get("sealed"):
            ident.sealed = True
        if h.get("cameras"):
            ident.cameras = sorted(set(ident.cameras) | {str(c) for c in h["cameras"]})
        if h.get("last_seen") is not None:
            ident.last_seen = max(ident.last_seen or 0.0, float(h["last_seen"]))
        if ident.first_seen is None and ident.last_seen is not None:
            ident.first_seen = ident.last_seen
        self._refresh(ident)

    def _move(self, key: tuple[str, int], source_gid: Optional[int], into: Identity, h: dict) -> None:
        """A tracklet's sighting leaves its identity for ``into`` (a reassignment)."""
        source = self.identities.get(int(source_gid)) if source_gid is not None else None
        if source is None or source is into:
            return
        moving = [s for s in source.sightings if (s.camera, s.local_id) == key]
        source.sightings = [s for s in source.sightings if (s.camera, s.local_id) != key]
        source.cameras = sorted({s.camera for s in source.sightings})
        source.version = self.version + 1
        for s in moving:
            self._attach(into, s)
        self._note(source, f"{key[0]}/{key[1]} moved to #{into.global_id}")
        self._note(into, f"{key[0]}/{key[1]} came from #{source.global_id}")

    def _merge(self, source: Identity, into: Identity) -> None:
        source.merged_into = into.global_id
        source.version = self.version + 1
        into.merged_from.append(source.global_id)
        for s in source.sightings:
            if (s.camera, s.local_id) not in {(x.camera, x.local_id) for x in into.sightings}:
                self._attach(into, s)
        into.crop = into.crop or source.crop
        self._note(source, f"merged into #{into.global_id}")

    def _track(self, h: dict) -> None:
        key = (str(h["camera"]), int(h["local_id"]))
        gid = self.where.get(key)
        if gid is None and h.get("global_id") is not None and int(h["global_id"]) in self.identities:
            gid = int(h["global_id"])
        ts = float(h["capture_ts"])
        if gid is None:  # no identity yet: kept aside until it has one
            s = self._pending.get(key)
            if s is None:
                s = self._pending[key] = Sighting(key[0], key[1], ts, ts, floor=deque(maxlen=self.limits.floor_points))
                while len(self._pending) > self.limits.max_pending:
                    self._pending.popitem(last=False)
            ident = None
        else:
            ident = self._get(gid)
            s = self._sighting(ident, key[0], key[1], ts)
        s.last_ts, s.touched = max(s.last_ts, ts), self.clock()
        if h["event"] == "ended":
            s.ended = True
        if h.get("floor") is not None:
            x, y = h["floor"]
            if not s.floor or s.floor[-1] != (float(x), float(y)):
                s.floor.append((float(x), float(y)))
        if ident is not None:
            self._refresh(ident)

    def _snapshot(self, h: dict) -> None:
        """Late joiners learn the identities they missed (no crops: those came with past events)."""
        for item in h["identities"]:
            gid = int(item["global_id"])
            if gid in self.identities:
                continue
            ident = self._get(gid)
            ident.cameras = sorted(str(c) for c in item.get("cameras", []))
            ident.last_seen = ident.first_seen = item.get("last_seen")
            ident.publish_ts, ident.last_event = h.get("publish_ts"), "snapshot"
            for cam, lid in item.get("live", []):
                s = self._sighting(ident, str(cam), int(lid), float(item.get("last_seen") or 0.0))
                s.touched = self.clock()

    # --- cameras and stats ------------------------------------------------------------------
    def _camera(self, cam_id: str) -> Camera:
        cam = self.cameras.get(cam_id)
        if cam is None:
            cam = self.cameras[cam_id] = Camera(cam_id)
            while len(self.cameras) > self.limits.max_cameras:
                self.cameras.popitem(last=False)
        cam.version = self.version + 1
        return cam

    def _frame(self, h: dict, jpeg: Optional[bytes]) -> None:
        if jpeg is None:
            raise ValueError("frame message without its JPEG")
        cam = self._camera(str(h["camera"]))
        cam.jpeg, cam.frame_seq = jpeg, cam.frame_seq + 1
        cam.header = {k: h.get(k) for k in ("frame", "capture_ts", "publish_ts", "width", "height", "boxes")}
        cam.frame_at = self.clock()
        cam.preview_times.append(cam.frame_at)

    def _stats(self, h: dict) -> None:
        keep = (
            "latency_ms",
            "end_to_end_ms",
            "dropped",
            "events_dropped",
            "gallery",
            "reconnects",
            "restarts",
            "frames",
            "embedded",
            "publish_ts",
        )
        self.stats = {k: h.get(k) for k in keep if k in h}
        now = self.clock()
        down, behind, every = h.get("down") or {}, h.get("below_rate") or {}, h.get("detect_every") or {}
        for cam_id in {*(h.get("fps") or {}), *down, *behind}:
            cam = self._camera(str(cam_id))
            cam.fps = (h.get("fps") or {}).get(cam_id)
            cam.down_for_s = down.get(cam_id)
            cam.behind = behind.get(cam_id)
            cam.detect_every = every.get(cam_id)
            cam.stats_at = now

    # --- output -----------------------------------------------------------------------------
    def _camera_view(self, cam: Camera, now: float) -> dict[str, Any]:
        down_since = None
        if cam.down_for_s is not None and cam.stats_at is not None:
            down_since = cam.stats_at - float(cam.down_for_s)
        elif cam.frame_at is not None and now - cam.frame_at > self.limits.stale_s:
            down_since = cam.frame_at  # previews stopped: down since the last one
        t = cam.preview_times
        preview_fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else None
        return {
            "id": cam.id,
            "frame_seq": cam.frame_seq,
            "frame": cam.header,
            "fps": cam.fps,
            "preview_fps": round(preview_fps, 2) if preview_fps else None,
            "down_since": down_since,
            "behind": cam.behind,
            "detect_every": cam.detect_every,
        }

    def _status(self, now: float) -> dict[str, Any]:
        silent_since = None
        if (
            self.connection["state"] == "connected"
            and self.last_message_at is not None
            and now - self.last_message_at > self.limits.stale_s
        ):
            silent_since = self.last_message_at
        return {
            "clock": now,
            "mode": self.mode,
            "connection": dict(self.connection),
            "silent_since": silent_since,
            "schema_problem": self.schema_problem,
            "counters": dict(self.counters),
            "stats": dict(self.stats),
            "crops_held": len(self.crops),
            "crop_bytes": self._crop_bytes,
            "identities_held": len(self.identities),
        }

    def full(self) -> dict[str, Any]:
        """Everything the page shows: every card, camera and the status."""
        with self._lock:
            now = self.clock()
            return {
                "version": self.version,
                "full": True,
                "identities": [i.card(self.limits.live_s) for i in self.identities.values()],
                "cameras": [self._camera_view(c, now) for c in self.cameras.values()],
                "status": self._status(now),
            }

    def delta(self, since: int) -> dict[str, Any]:
        """What changed after version ``since``: changed cards, forgotten ids, cameras, the
        status; the full state instead when ``since`` is too old to list what was forgotten."""
        if since < self._removed_horizon:
            return self.full()
        with self._lock:
            now = self.clock()
            removed = [gid for v, gid in self._removed if v > since and gid not in self.identities]
            return {
                "version": self.version,
                "full": False,
                "removed": removed,
                "identities": [i.card(self.limits.live_s) for i in self.identities.values() if i.version > since],
                "cameras": [self._camera_view(c, now) for c in self.cameras.values()],
                "status": self._status(now),
            }

    def journey(self, gid: int) -> Optional[dict[str, Any]]:
        """One identity's card and its sightings in order (camera, time span, crop, floor track)."""
        with self._lock:
            ident = self.identities.get(gid)
            if ident is None:
                return None
            return {"card": ident.card(self.limits.live_s), "sightings": [s.as_dict() for s in ident.sightings]}

    def crop(self, crop_id: int) -> Optional[bytes]:
        with self._lock:
            return self.crops.get(crop_id)

    def frame(self, cam_id: str) -> Optional[bytes]:
        with self._lock:
            cam = self.cameras.get(cam_id)
            return cam.jpeg if cam is not None else None
