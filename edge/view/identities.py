"""The people the view knows: identities, their sightings (one per tracklet) and their crops, bounded.

:class:`IdentityBook` takes the headers of ``identity/``, ``track/`` and ``snapshot`` events
(:class:`~edge.view.state.ViewState` decodes and dispatches them) and keeps:

- identities: ``max_identities`` (the longest-untouched are forgotten first, and the forgetting is
  logged by version so a delta can name what went);
- sightings (camera, local id, time span, crop, floor track): the newest ``sightings_per_identity``
  of each identity, ``floor_points`` floor samples each; a tracklet seen before its identity event
  waits aside (``max_pending`` of them) with its span, floor track and end;
- crops (:class:`CropStore`): ``max_crops`` JPEGs and ``max_crop_bytes`` bytes in all.

Not thread-safe by itself: the state's lock covers every call.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from edge.view.config import Limits

Tracklet = tuple[str, int]  # (camera, local id)


@dataclass
class Sighting:
    camera: str
    local_id: int
    first_ts: float
    last_ts: float
    crop: Optional[int] = None
    ended: bool = False
    touched: float = 0.0  # view clock of the last event about it
    floor: deque[tuple[float, float]] = field(default_factory=deque)

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
    cameras: list[str] = field(default_factory=list)
    sightings: list[Sighting] = field(default_factory=list)  # newest sightings_per_identity, ordered by first_ts
    crop: Optional[int] = None
    merged_into: Optional[int] = None
    merged_from: list[int] = field(default_factory=list)
    expired: bool = False
    sealed: bool = False  # founded by a tracklet too short to match (a flicker): nothing will join it
    provisional: bool = False  # an id a site node gave while its hub was away (its events say so)
    notes: deque[str] = field(default_factory=deque)
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
            "provisional": self.provisional,
            "notes": list(self.notes),
            "sightings": len(self.sightings),
            "active_until": self.active_until(live_s),
            "publish_ts": self.publish_ts,
            "last_event": self.last_event,
        }


class CropStore:
    """Crop JPEGs by id, oldest dropped first past ``max_crops`` or ``max_crop_bytes``."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.jpegs: OrderedDict[int, bytes] = OrderedDict()
        self.bytes = 0
        self._next = 1

    def __len__(self) -> int:
        return len(self.jpegs)

    def add(self, jpeg: Optional[bytes]) -> Optional[int]:
        """Keep ``jpeg`` and return its id (None for no crop)."""
        if jpeg is None:
            return None
        cid, self._next = self._next, self._next + 1
        self.jpegs[cid] = jpeg
        self.bytes += len(jpeg)
        while self.jpegs and (len(self.jpegs) > self.limits.max_crops or self.bytes > self.limits.max_crop_bytes):
            self.bytes -= len(self.jpegs.popitem(last=False)[1])
        return cid

    def get(self, crop_id: int) -> Optional[bytes]:
        return self.jpegs.get(crop_id)


class IdentityBook:
    """Identities and their sightings. ``clock`` is the view's now; ``stamp`` the version the
    change being made will carry (what a card's ``version`` is set to when it changes)."""

    def __init__(self, limits: Limits, crops: CropStore, clock: Callable[[], float], stamp: Callable[[], int]):
        self.limits, self.crops, self.clock, self.stamp = limits, crops, clock, stamp
        self.identities: OrderedDict[int, Identity] = OrderedDict()  # least recently touched first
        self.where: dict[Tracklet, int] = {}  # tracklet -> identity holding its sighting
        # identities forgotten, with the version at which they went: a delta names them, so a
        # flood does not turn every update into the full state; older than the deque -> full
        self.removed: deque[tuple[int, int]] = deque(maxlen=10000)
        self.removed_horizon = 0  # versions at or below this may have lost removals from the deque
        # tracklets seen before they had an identity (the engine decides after a few embeddings):
        # their time span, floor track and end wait here for the identity event
        self._pending: OrderedDict[Tracklet, Sighting] = OrderedDict()

    def removed_after(self, since: int) -> list[int]:
        """Identities forgotten after version ``since`` (and not back since)."""
        return [gid for v, gid in self.removed if v > since and gid not in self.identities]

    # --- bookkeeping ------------------------------------------------------------------------
    def _get(self, gid: int) -> Identity:
        ident = self.identities.get(gid)
        if ident is None:
            ident = self.identities[gid] = Identity(gid)
            while len(self.identities) > self.limits.max_identities:
                self._forget(next(iter(self.identities)))
        self.identities.move_to_end(gid)
        ident.version = self.stamp()
        return ident

    def _forget(self, gid: int) -> None:
        ident = self.identities.pop(gid)
        for s in ident.sightings:
            if self.where.get((s.camera, s.local_id)) == gid:
                del self.where[(s.camera, s.local_id)]
        if len(self.removed) == self.removed.maxlen:
            self.removed_horizon = self.removed[0][0]
        self.removed.append((self.stamp(), gid))

    def _new_sighting(self, key: Tracklet, ts: float) -> Sighting:
        return Sighting(key[0], key[1], ts, ts, floor=deque(maxlen=self.limits.floor_points))

    def _sighting(self, ident: Identity, camera: str, local_id: int, ts: float) -> Sighting:
        """The identity's sighting of tracklet (camera, local_id), created when new."""
        for s in ident.sightings:
            if s.camera == camera and s.local_id == local_id:
                return s
        waiting = self._pending.pop((camera, local_id), None)
        s = waiting if waiting is not None else self._new_sighting((camera, local_id), ts)
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

    @staticmethod
    def _refresh(ident: Identity) -> None:
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

    # --- events -----------------------------------------------------------------------------
    def identity(self, h: dict[str, Any], jpeg: Optional[bytes]) -> None:
        """An ``identity/<global_id>`` event (``jpeg``: its crop, if any)."""
        kind, gid = h["event"], int(h["global_id"])
        now = self.clock()
        ident = self._get(gid)
        ident.publish_ts, ident.last_event = h.get("publish_ts"), kind
        if kind in ("new", "assigned", "reassigned"):
            ts = float(h.get("capture_ts", h.get("last_seen", 0.0)))
            key = (str(h["camera"]), int(h["local_id"]))
            previous = self.where.get(key)
            if kind == "reassigned" or (previous is not None and previous != gid):
                self._move(key, previous if previous is not None else h.get("from"), ident)
            s = self._sighting(ident, key[0], key[1], ts)
            s.last_ts, s.touched = max(s.last_ts, ts), now
            crop = self.crops.add(jpeg)
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
        if h.get("provisional"):
            ident.provisional = True
        if h.get("cameras"):
            ident.cameras = sorted(set(ident.cameras) | {str(c) for c in h["cameras"]})
        if h.get("last_seen") is not None:
            ident.last_seen = max(ident.last_seen or 0.0, float(h["last_seen"]))
        if ident.first_seen is None and ident.last_seen is not None:
            ident.first_seen = ident.last_seen
        self._refresh(ident)

    def _move(self, key: Tracklet, source_gid: Optional[int], into: Identity) -> None:
        """A tracklet's sighting leaves its identity for ``into`` (a reassignment)."""
        source = self.identities.get(int(source_gid)) if source_gid is not None else None
        if source is None or source is into:
            return
        moving = [s for s in source.sightings if (s.camera, s.local_id) == key]
        source.sightings = [s for s in source.sightings if (s.camera, s.local_id) != key]
        source.cameras = sorted({s.camera for s in source.sightings})
        source.version = self.stamp()
        for s in moving:
            self._attach(into, s)
        self._note(source, f"{key[0]}/{key[1]} moved to #{into.global_id}")
        self._note(into, f"{key[0]}/{key[1]} came from #{source.global_id}")

    def _merge(self, source: Identity, into: Identity) -> None:
        source.merged_into = into.global_id
        source.version = self.stamp()
        into.merged_from.append(source.global_id)
        for s in source.sightings:
            if (s.camera, s.local_id) not in {(x.camera, x.local_id) for x in into.sightings}:
                self._attach(into, s)
        into.crop = into.crop or source.crop
        self._note(source, f"merged into #{into.global_id}")

    def track(self, h: dict[str, Any]) -> None:
        """A ``track/<camera>`` event: the tracklet's span, end and floor track."""
        key = (str(h["camera"]), int(h["local_id"]))
        gid = self.where.get(key)
        if gid is None and h.get("global_id") is not None and int(h["global_id"]) in self.identities:
            gid = int(h["global_id"])
        ts = float(h["capture_ts"])
        ident: Optional[Identity] = None
        if gid is None:  # no identity yet: kept aside until it has one
            s = self._pending.get(key)
            if s is None:
                s = self._pending[key] = self._new_sighting(key, ts)
                while len(self._pending) > self.limits.max_pending:
                    self._pending.popitem(last=False)
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

    def snapshot(self, h: dict[str, Any]) -> None:
        """Late joiners learn the identities they missed (no crops: those came with past events)."""
        for item in h["identities"]:
            gid = int(item["global_id"])
            if gid in self.identities:
                continue
            ident = self._get(gid)
            ident.cameras = sorted(str(c) for c in item.get("cameras", []))
            ident.last_seen = ident.first_seen = item.get("last_seen")
            ident.publish_ts, ident.last_event = h.get("publish_ts"), "snapshot"
            ident.provisional = bool(item.get("provisional"))
            for cam, lid in item.get("live", []):
                s = self._sighting(ident, str(cam), int(lid), float(item.get("last_seen") or 0.0))
                s.touched = self.clock()
