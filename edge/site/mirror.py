"""The hub's mirror of the nodes' live tracklets: what each node sent, under the engine's ids.

A node's local ids restart with each node session, so the hub gives every tracklet an *engine
id*, unique per camera across sessions: ``base + local id``, where a camera's base moves above
every engine id seen when a new session of its node starts. The mirror keeps, per tracklet, the
latest summary from the wire, the appearance and floor track accumulated over the summaries (a
summary sends its appearance only when it changed, and only the floor samples not sent yet), and
the site id last told to the node. Tracklets restored from the store as *pinned* (a site id told
before the hub restarted) get that id back when their node resends them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

import numpy as np

from core.embeddings import Embeddings
from edge.identity import FloorTrack, TrackletSummary
from edge.wire.site_protocol import WireTracklet

MirrorKey = tuple[str, str, str, int]  # (node, node session, camera, node-local id)


@dataclass
class HubTracklet:
    """The hub's copy of one node tracklet (what events show, plus the engine's summary)."""

    node: str
    session: str
    camera: str
    local_id: int  # the node's id
    engine_id: int  # the engine's id for it (unique per camera across node restarts)
    wire: WireTracklet
    appearance: Optional[Embeddings] = None
    floor: Optional[FloorTrack] = None
    told: Optional[int] = None  # site id last told to the node

    # what an identity event reads of the tracklet behind a decision (edge.wire.events.SeenTracklet,
    # named as the runtime's Tracklet names them)
    @property
    def camera_id(self) -> str:
        return self.camera

    @property
    def xyxy(self) -> np.ndarray:
        return self.wire.last_box

    @property
    def conf(self) -> float:
        return self.wire.conf

    @property
    def last_seen(self) -> float:
        return self.wire.last_seen

    @property
    def last_frame(self) -> int:
        return self.wire.frame

    def absorb(self, w: WireTracklet, full: bool) -> None:
        """One more summary of this tracklet (``full``: a resync, which restarts the floor track)."""
        if w.appearance is not None:
            self.appearance = w.appearance
        if full or self.floor is None:
            self.floor = FloorTrack() if w.floor is not None else self.floor
        if w.floor is not None and self.floor is not None:  # the line above made one when samples come
            last = self.floor.times[-1] if len(self.floor) else -np.inf
            for t, x, y in w.floor:
                if t > last:
                    self.floor.add(t, np.array([x, y]))
        self.wire = w

    def summary(self) -> TrackletSummary:
        """What the identity engine reads of this tracklet."""
        w = self.wire
        return TrackletSummary(
            self.camera,
            self.engine_id,
            w.first_seen,
            w.last_seen,
            self.appearance if w.n_embeddings else None,
            w.n_embeddings,
            w.weight,
            w.first_box,
            w.last_box,
            self.floor,
            w.ended,
        )


class Mirror:
    """Every live node tracklet the hub knows, by node key and by engine key."""

    def __init__(self) -> None:
        self.tracklets: dict[MirrorKey, HubTracklet] = {}
        self.by_engine_key: dict[tuple[str, int], HubTracklet] = {}
        self.bases: dict[str, int] = {}  # per camera: engine id = base + node local id
        self.max_engine_id: dict[str, int] = defaultdict(int)
        self.pinned: dict[MirrorKey, int] = {}  # site ids from the store, for tracklets not resent yet
        self.dirty: list[HubTracklet] = []  # changed outside a step (a session ended): the next step sends them

    def new_session(self, cameras: list[str]) -> None:
        """A new session of a node: its local ids start again, so its cameras' engine ids go above
        every id seen."""
        for cam in cameras:
            self.bases[cam] = self.max_engine_id[cam] if cam in self.bases or self.max_engine_id[cam] else 0

    def end_session(self, node: str, session: str) -> None:
        """A node restarted: the old session's tracklets end where they were last seen."""
        for key, t in list(self.tracklets.items()):
            if key[0] == node and key[1] == session and not t.wire.ended:
                t.wire.ended = True
                self.dirty.append(t)

    def told_ids(self, node: str, session: str) -> list[list]:
        """``[camera, local id, site id]`` of every tracklet of this node session with a site id (the
        welcome tells a returning node what it had)."""
        ids: list[list] = [
            [t.camera, t.local_id, t.told]
            for k, t in self.tracklets.items()
            if k[0] == node and k[1] == session and t.told is not None
        ]
        ids += [[cam, lid, gid] for (n, s, cam, lid), gid in self.pinned.items() if n == node and s == session]
        return ids

    def take_dirty(self) -> list[HubTracklet]:
        out, self.dirty = self.dirty, []
        return out

    def absorb(self, node: str, session: str, w: WireTracklet, full: bool) -> tuple[HubTracklet, Optional[int]]:
        """One summary from a node: its tracklet (new ones get their engine id), and the site id it
        was pinned to by the store, if any (given once)."""
        key = (node, session, w.camera, w.local_id)
        t = self.tracklets.get(key)
        if t is None:
            engine_id = self.bases.get(w.camera, 0) + w.local_id
            self.max_engine_id[w.camera] = max(self.max_engine_id[w.camera], engine_id)
            t = HubTracklet(node, session, w.camera, w.local_id, engine_id, w)
            self.tracklets[key] = t
            self.by_engine_key[(w.camera, engine_id)] = t
        t.absorb(w, full)
        return t, self.pinned.pop(key, None)

    def forget(self, t: HubTracklet) -> None:
        """A final tracklet: the hub forgets it (its identity keeps the evidence)."""
        self.tracklets.pop((t.node, t.session, t.camera, t.local_id), None)
        self.by_engine_key.pop((t.camera, t.engine_id), None)
