"""The identity hub: one identity engine over every edge node's cameras.

Nodes connect a DEALER to the hub's ROUTER (the ZeroMQ guide's asynchronous client/server) and
send tracklet summaries; the hub feeds them to the same :class:`~edge.identity.IdentityEngine`
the single-box runtime uses, tells each node the site ids of its tracklets, and publishes the
site's identity events (schema v2 plus ``node``) on its own PUB socket.

Reliability (the guide's heartbeating and sequence numbers): every node message carries a
sequence number, strictly increasing per node session; a duplicate or replayed one is dropped and
counted. Both sides heartbeat; a node silent for ``node_timeout_s`` is a *gap*, reported in the
stats. A node that comes back with the same session resends its live tracklets and keeps its site
ids; a new session (the node restarted) ends the old session's tracklets, whose identities stay in
the gallery. After each engine step the hub commits its identities to SQLite (WAL) *before*
publishing, and reloads them on start. Publishing never waits: a slow subscriber loses messages
at the PUB socket's high-water mark instead of stalling the hub.

One thread: a poll loop over the ROUTER socket, with the publisher's own sender thread.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import zmq

from edge.identity import Decision, FloorTrack, IdentityEngine, TrackletSummary
from edge.identity.engine import settings_from_config
from edge.site.config import HubConfig
from edge.site.gallery import Gallery, candidates_for
from edge.site.report import summary_line
from edge.site.store import Store, StoreError, TrackletRow, store_error
from edge.wire.curve import Guard, allow_list_names, check_bind, key_id
from edge.wire.publisher import EventPublisher, decision_event
from edge.wire.site_protocol import (
    NODE_KINDS,
    DimensionError,
    ProtocolError,
    WireTracklet,
    decode,
    decode_tracklets,
    encode,
    model_id,
)

log = logging.getLogger(__name__)


@dataclass
class HubTracklet:
    """The hub's copy of one node tracklet (what events show, plus the engine's summary)."""

    node: str
    session: str
    camera: str
    local_id: int  # the node's id
    engine_id: int  # the engine's id for it (unique per camera across node restarts)
    wire: WireTracklet
    appearance: object = None
    floor: Optional[FloorTrack] = None
    told: Optional[int] = None  # site id last told to the node

    # what publisher.decision_event reads of a tracklet
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
        if w.appearance is not None:
            self.appearance = w.appearance
        if full or self.floor is None:
            self.floor = FloorTrack() if w.floor is not None else self.floor
        if w.floor is not None:
            last = self.floor.times[-1] if len(self.floor) else -np.inf
            for t, x, y in w.floor:
                if t > last:
                    self.floor.add(t, np.array([x, y]))
        self.wire = w

    def summary(self) -> TrackletSummary:
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


@dataclass
class NodeState:
    name: str
    session: str
    routing_id: bytes
    key: str = ""
    cameras: list[str] = field(default_factory=list)
    last_seq: int = 0
    last_heard: float = field(default_factory=time.monotonic)
    away_since: Optional[float] = None
    gaps: list[float] = field(default_factory=list)  # seconds each gap lasted
    summaries: int = 0
    finished: bool = False
    pending: deque = field(default_factory=deque)  # (now, items) steps waiting (lockstep)


class Hub:
    """The hub's state and its poll loop (:meth:`run`, or :meth:`poll_once` for tests)."""

    def __init__(self, cfg: HubConfig, context: Optional[zmq.Context] = None):
        from core.model_card import read_onnx_metadata

        self.cfg = cfg
        meta = read_onnx_metadata(cfg.reid_model)
        if meta is None or not meta.embedding_dim:
            raise ValueError(f"{cfg.reid_model}: no clipreid-edge metadata (embedding size unknown)")
        self.model_id = model_id(cfg.reid_model)
        self.dim = int(meta.embedding_dim)
        settings = settings_from_config(cfg.matching, meta.similarity, cfg.reid_model, self.dim)
        self.gallery = Gallery(self.dim, cfg.gallery_approximate_above)
        self.engine = IdentityEngine(settings, candidates=self._candidates)
        self.session = uuid.uuid4().hex[:12]
        self.context = context or zmq.Context.instance()
        check_bind(cfg.bind, cfg.curve is not None, cfg.insecure, "the hub")
        self.guard = Guard(self.context)
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a node that reconnects takes its name back
        self.router.setsockopt(zmq.SNDHWM, 10000)
        self.node_allow = None
        self.key_names: dict[str, str] = {}  # with CURVE: a node's name is its key file's name
        if cfg.curve is not None:
            self.node_allow = self.guard.serve(self.router, cfg.curve.secret_key, cfg.curve.allow, "nodes")
            self.key_names = allow_list_names(cfg.curve.allow)
        try:
            self.router.bind(cfg.bind)
        except zmq.ZMQError as exc:
            self.close()
            raise RuntimeError(f"cannot bind the hub to {cfg.bind}: {exc}") from exc
        p = cfg.publisher
        self.publisher = (
            EventPublisher(p.endpoint, p.high_water_mark, curve=p.curve, insecure=p.insecure, guard=self.guard)
            if p.enabled
            else None
        )
        self.nodes: dict[str, NodeState] = {}
        self.tracklets: dict[tuple[str, str, str, int], HubTracklet] = {}  # (node, session, camera, local id)
        self.by_engine_key: dict[tuple[str, int], HubTracklet] = {}
        self.bases: dict[str, int] = {}  # per camera: engine id = base + node local id
        self.max_engine_id: dict[str, int] = defaultdict(int)
        self.counters = defaultdict(int)  # malformed, replayed, refused, summaries, published, steps
        self.refusals: dict[str, str] = {}
        self._now = -np.inf
        self._dirty: list[HubTracklet] = []
        self._stats_at = self._beat_at = time.monotonic()
        self._started = time.monotonic()
        self.store: Optional[Store] = None
        self._pinned: dict[tuple[str, str, str, int], int] = {}
        if cfg.store:
            self._open_store(cfg.store)

    # --- persistence ------------------------------------------------------------------------
    def _open_store(self, path: str) -> None:
        """Open the store and reload what it holds; a file that is no hub store ends the start
        with one line naming the ``store`` field and the file (sockets closed)."""
        try:
            self.store = Store(path)
            self._reload()
        except StoreError:
            self.close()
            raise
        except sqlite3.Error as exc:  # a database of another program: tables without the hub's columns
            self.close()
            raise store_error(path, exc) from exc

    def _reload(self) -> None:
        identities = self.store.identities()
        meta = self.store.meta()
        sealed = set(meta.get("sealed", []))
        for ident in identities:
            ident.sealed = ident.global_id in sealed
        self.engine.restore(identities, int(meta.get("next_gid", 1)), meta.get("centering"))
        self.bases = {k: int(v) for k, v in meta.get("bases", {}).items()}
        for row in self.store.tracklets():
            self.max_engine_id[row.camera] = max(self.max_engine_id[row.camera], row.engine_id)
            if row.site_id is not None and not row.final:
                self._pinned[(row.node, row.session, row.camera, row.local_id)] = row.site_id
        vectors = [(i.global_id, i.embedding) for i in identities if i.embedding is not None and not i.sealed]
        if vectors:
            self.gallery.upsert([g for g, _ in vectors], np.stack([v for _, v in vectors]))
        self._next_gid = int(meta.get("next_gid", 1))
        if identities:
            log.info(
                "hub: reloaded %d identities and %d pinned tracklets from %s",
                len(identities),
                len(self._pinned),
                self.cfg.store,
            )

    def _persist(
        self, decisions: list[Decision], finals: list[tuple[tuple[str, int], int]], touched_tracklets: list[HubTracklet]
    ) -> None:
        touched = {d.global_id for d in decisions} | {d.previous for d in decisions if d.previous is not None}
        touched |= set(self.engine.assignment.values()) | {gid for _, gid in finals}
        alive = [self.engine.identities[g] for g in sorted(touched) if g in self.engine.identities]
        removed = [g for g in touched if g not in self.engine.identities]
        vec = [
            (i.global_id, i.embedding) for i in alive if i.embedding is not None and not i.sealed
        ]  # nothing joins a sealed one
        self.gallery.remove(removed)
        if vec:
            self.gallery.upsert([g for g, _ in vec], np.stack([v for _, v in vec]))
        if self.store is None:
            return
        final_keys = {k for k, _ in finals}
        rows = [
            TrackletRow(
                t.node,
                t.session,
                t.camera,
                t.local_id,
                t.engine_id,
                self.engine.global_id((t.camera, t.engine_id)) or t.told,
                (t.camera, t.engine_id) in final_keys,
            )
            for t in touched_tracklets
        ]
        next_gid = max([self._next_gid, *(d.global_id + 1 for d in decisions)])
        self._next_gid = next_gid
        meta: dict[str, object] = {"next_gid": next_gid, "bases": self.bases}
        if finals:  # camera looks change when tracklets go final
            meta["centering"] = self.engine.centering_state()
        if any(d.kind == "new" for d in decisions):
            meta["sealed"] = sorted(g for g, i in self.engine.identities.items() if i.sealed)
        self.store.save(alive, removed, rows, meta)

    # --- the gallery seam -------------------------------------------------------------------
    def _candidates(self, waiting: list[TrackletSummary]) -> Optional[list[set[int]]]:
        if len(self.engine.identities) < self.cfg.gallery_exact_below:
            return None  # small site: every identity, exactly as one process would
        active = set(self.engine.assignment.values())
        looks = [self.engine.look(s) for s in waiting]  # what the engine compares (camera-centered when on)
        found = candidates_for(self.gallery, [None if a is None else a.global_[0] for a in looks], self.cfg.gallery_k)
        return [ids | active for ids in found]

    # --- messages ---------------------------------------------------------------------------
    def _send(self, routing_id: bytes, kind: str, header: dict) -> None:
        try:
            self.router.send_multipart([routing_id, *encode(kind, header)], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the node went away or does not keep up: it resyncs on return
            log.debug("send %s to %r: %s", kind, routing_id, exc)

    def _refuse(self, routing_id: bytes, node: str, reason: str) -> None:
        self.counters["refused"] += 1
        self.refusals[node] = reason
        log.error("node %s refused: %s", node, reason)
        self._send(routing_id, "refused", {"reason": reason})
        state = self.nodes.get(node)
        if state is not None and state.routing_id == routing_id:
            del self.nodes[node]

    def handle(self, frames: list[zmq.Frame]) -> None:
        """One message from a node; a bad one is dropped and counted, never raised."""
        routing_id = frames[0].bytes
        try:
            user = frames[1].get("User-Id") if len(frames) > 1 else None
        except zmq.ZMQError:
            user = None
        try:
            msg = decode([f.bytes for f in frames[1:]], NODE_KINDS)
            seq = msg.header.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool):
                raise ProtocolError("no sequence number")
            if msg.kind == "hello":
                self._hello(routing_id, msg.header, user)
                return
            node = self._node_of(routing_id)
            if node is not None and self.key_names and self.key_names.get(user or "") != node.name:
                raise ProtocolError(f"a message for node {node.name} from another key ({key_id(user or '')})")
            if node is None:
                self._send(routing_id, "refused", {"reason": "say hello first", "retry": True})
                self.counters["unknown_sender"] += 1
                return
            if seq <= node.last_seq:
                self.counters["replayed"] += 1
                log.warning(
                    "node %s: message %d dropped (replayed or duplicate; last was %d)", node.name, seq, node.last_seq
                )
                return
            node.last_seq = seq
            self._heard(node)
            if msg.kind == "summaries":
                try:
                    now, items = decode_tracklets(msg, self.dim)
                except DimensionError as exc:
                    self._refuse(routing_id, node.name, str(exc))
                    return
                foreign = sorted({t.camera for t in items} - set(node.cameras))
                if foreign:
                    raise ProtocolError(f"cameras {foreign} are not node {node.name}'s")
                node.pending.append((now, items, bool(msg.header.get("full"))))
                node.summaries += len(items)
                self.counters["summaries"] += len(items)
                self._send(routing_id, "ack", {"seq": seq})
            elif msg.kind == "bye":
                node.finished = True
                log.info("node %s: bye", node.name)
        except ProtocolError as exc:
            self.counters["malformed"] += 1
            log.warning("dropped a malformed message from %r: %s", routing_id[:32], exc)
        except Exception:  # noqa: BLE001 - a message the checks missed: one node's input never stops the site
            self.counters["malformed"] += 1
            log.exception("dropped a message from %r that the hub could not handle", routing_id[:32])

    def _node_of(self, routing_id: bytes) -> Optional[NodeState]:
        for n in self.nodes.values():
            if n.routing_id == routing_id:
                return n
        return None

    def _hello(self, routing_id: bytes, h: dict, user: Optional[str]) -> None:
        name, session = h.get("node"), h.get("session")
        cameras = h.get("cameras")
        if (
            not isinstance(name, str)
            or not isinstance(session, str)
            or not isinstance(cameras, list)
            or not all(isinstance(c, str) for c in cameras)
        ):
            raise ProtocolError("hello needs node, session and cameras")
        if self.key_names and self.key_names.get(user or "") != name:
            return self._refuse(
                routing_id,
                name,
                f"node {name!r} connected with the key of {self.key_names.get(user or '')!r}: "
                "a node's name is its key file's name in the allow-list",
            )
        if self.cfg.lockstep and name not in self.cfg.lockstep:  # its steps would wait forever
            return self._refuse(
                routing_id, name, f"node {name!r} is not one of this lockstep site's nodes {self.cfg.lockstep}"
            )
        if h.get("model_id") != self.model_id:
            return self._refuse(routing_id, name, f"model {h.get('model_id')!r}, the hub's is {self.model_id!r}")
        if h.get("embedding_dim") != self.dim:
            return self._refuse(
                routing_id, name, f"embedding size {h.get('embedding_dim')}, the hub's model gives {self.dim}"
            )
        owner = {c: n.name for n in self.nodes.values() if n.name != name for c in n.cameras}
        taken = sorted(c for c in cameras if c in owner)
        if taken:
            return self._refuse(
                routing_id, name, f"cameras {taken} belong to another node ({', '.join(owner[c] for c in taken)})"
            )
        old = self.nodes.get(name)
        if old is not None and old.session == session:
            if h["seq"] <= old.last_seq:
                self.counters["replayed"] += 1
                return
            old.routing_id, old.last_seq = routing_id, h["seq"]
            self._heard(old)
            log.info("node %s: back (session %s)", name, session)
        else:
            if old is not None:
                self._end_session(old)
            state = NodeState(name, session, routing_id, key_id(user) if user else "", list(cameras), last_seq=h["seq"])
            if old is not None:
                state.gaps = old.gaps
            self.nodes[name] = state
            for cam in cameras:  # a new session's local ids start again: put them above every id seen
                self.bases[cam] = self.max_engine_id[cam] if cam in self.bases or self.max_engine_id[cam] else 0
            log.info(
                "node %s: session %s, cameras %s%s", name, session, cameras, f", key {state.key}" if state.key else ""
            )
        ids = [
            [t.camera, t.local_id, t.told]
            for k, t in self.tracklets.items()
            if k[0] == name and k[1] == session and t.told is not None
        ]
        ids += [[cam, lid, gid] for (n, s, cam, lid), gid in self._pinned.items() if n == name and s == session]
        self._send(routing_id, "welcome", {"hub_session": self.session, "ids": ids})

    def _end_session(self, node: NodeState) -> None:
        """A node restarted: the old session's tracklets end where they were last seen."""
        for key, t in list(self.tracklets.items()):
            if key[0] == node.name and key[1] == node.session and not t.wire.ended:
                t.wire.ended = True
                self._dirty.append(t)
        log.info("node %s: session %s ended (node restarted)", node.name, node.session)

    def _heard(self, node: NodeState) -> None:
        now = time.monotonic()
        if node.away_since is not None:
            gap = now - node.away_since + self.cfg.node_timeout_s
            node.gaps.append(round(gap, 2))
            log.warning("node %s: back after a gap of %.1f s", node.name, gap)
            node.away_since = None
        node.last_heard = now

    # --- engine steps -----------------------------------------------------------------------
    def _take_steps(self) -> list[tuple[float, list[tuple[NodeState, WireTracklet, bool]]]]:
        """Batches ready for the engine: everything received (free running), or one step of each
        lockstep node once all of them have sent it (or said bye)."""
        steps = []
        if not self.cfg.lockstep:
            items, now = [], -np.inf
            for n in self.nodes.values():
                while n.pending:
                    t, batch, full = n.pending.popleft()
                    now = max(now, t)
                    items += [(n, w, full) for w in batch]
            if items or self._dirty:
                steps.append((now, items))
            return steps
        while True:
            members = [self.nodes.get(name) for name in self.cfg.lockstep]
            if any(m is None or (not m.pending and not m.finished) for m in members):
                return steps
            if all(not m.pending for m in members):
                return steps
            items, now = [], -np.inf
            for m in members:
                if m.pending:
                    t, batch, full = m.pending.popleft()
                    now = max(now, t)
                    items += [(m, w, full) for w in batch]
            steps.append((now, items))

    def step(self) -> int:
        """Run the engine over what arrived; returns the number of engine updates."""
        steps = self._take_steps()
        for now, items in steps:
            self._update(now, items)
        names = self.cfg.lockstep or list(self.nodes)
        all_done = bool(names) and all(
            (n := self.nodes.get(name)) is not None and n.finished and not n.pending for name in names
        )
        if all_done and self.engine.records:
            last = self.engine.flush(
                self._now
            )  # every node said bye: everything is final, as at the end of a single run
            self._update(self._now, [], flushed=last)
        return len(steps)

    def _update(
        self, now: float, items: list[tuple[NodeState, WireTracklet, bool]], flushed: Optional[list[Decision]] = None
    ) -> None:
        t0 = time.perf_counter()
        touched: list[HubTracklet] = list(self._dirty)
        self._dirty = []
        adopted: list[Decision] = []
        for node, w, full in items:
            key = (node.name, node.session, w.camera, w.local_id)
            t = self.tracklets.get(key)
            if t is None:
                engine_id = self.bases.get(w.camera, 0) + w.local_id
                self.max_engine_id[w.camera] = max(self.max_engine_id[w.camera], engine_id)
                t = HubTracklet(node.name, node.session, w.camera, w.local_id, engine_id, w)
                self.tracklets[key] = t
                self.by_engine_key[(w.camera, engine_id)] = t
            t.absorb(w, full)
            touched.append(t)
            pinned = self._pinned.pop(key, None)
            if pinned is not None:
                d = self.engine.adopt(t.summary(), pinned)
                if d is not None:
                    adopted.append(d)
        if np.isfinite(now):
            self._now = max(self._now, now)
        unique = list({id(t): t for t in touched}.values())
        decisions = adopted + (
            flushed if flushed is not None else self.engine.update([t.summary() for t in unique], self._now)
        )
        finals = self.engine.take_final()
        self.counters["steps"] += 1
        self.counters["match_ms_total"] += (time.perf_counter() - t0) * 1000
        changed = [
            t
            for t in self.by_engine_key.values()
            if t.told != self.engine.global_id((t.camera, t.engine_id))
            and self.engine.global_id((t.camera, t.engine_id)) is not None
        ]
        for t in changed:
            t.told = self.engine.global_id((t.camera, t.engine_id))
        final_t = [(self.by_engine_key.get(k), gid) for k, gid in finals]
        for t, gid in final_t:
            if t is not None:
                t.told = gid
        self._persist(
            decisions,
            finals,
            list({id(t): t for t in (*unique, *changed, *(t for t, _ in final_t if t is not None))}.values()),
        )
        self._tell_nodes(decisions, changed, final_t)
        self._publish(decisions)
        for t, _ in final_t:  # final: the hub forgets the tracklet (its identity keeps the evidence)
            if t is not None:
                self.tracklets.pop((t.node, t.session, t.camera, t.local_id), None)
                self.by_engine_key.pop((t.camera, t.engine_id), None)

    def _tell_nodes(self, decisions: list[Decision], changed: list[HubTracklet], finals) -> None:
        per_node: dict[str, dict] = defaultdict(lambda: {"ids": [], "final": [], "decisions": []})
        for t in changed:
            per_node[t.node]["ids"].append([t.camera, t.local_id, t.told])
        for t, gid in finals:
            if t is not None:
                per_node[t.node]["final"].append([t.camera, t.local_id, gid])
        for d in decisions:
            t = self.by_engine_key.get(d.key) if d.key is not None else None
            if t is not None:
                ident = self.engine.identities.get(d.global_id)
                per_node[t.node]["decisions"].append(
                    {
                        "kind": d.kind,
                        "global_id": d.global_id,
                        "camera": t.camera,
                        "local_id": t.local_id,
                        "previous": d.previous,
                        "cameras": sorted(ident.cameras) if ident else list(d.cameras),
                        "last_seen": ident.last_seen if ident else t.last_seen,
                    }
                )
        for name, body in per_node.items():
            node = self.nodes.get(name)
            if node is not None:
                self._send(node.routing_id, "ids", body)

    def _publish(self, decisions: list[Decision]) -> None:
        if self.publisher is None:
            return
        for d in decisions:
            ident = self.engine.identities.get(d.global_id)
            t = self.by_engine_key.get(d.key) if d.key is not None else None
            header = decision_event(d, ident, t)
            if t is not None:
                header.update(node=t.node, local_id=t.local_id)
            emb = ident.embedding if (ident is not None and self.cfg.publisher.send_embeddings) else None
            self.publisher.publish(f"identity/{d.global_id}", header, emb)
            self.counters["published"] += 1

    # --- the loop ---------------------------------------------------------------------------
    def housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._beat_at >= self.cfg.heartbeat_s:
            self._beat_at = now
            for n in self.nodes.values():
                self._send(n.routing_id, "heartbeat", {"hub_session": self.session})
                if n.away_since is None and not n.finished and now - n.last_heard > self.cfg.node_timeout_s:
                    n.away_since = now
                    log.warning("node %s: no word for %.1f s (gap)", n.name, now - n.last_heard)
        if now - self._stats_at >= self.cfg.stats_interval_s:
            self._stats_at = now
            report = self.stats()
            log.info("hub: %s", summary_line(report))
            if self.publisher is not None:
                self.publisher.publish("stats", {"event": "stats", **report})

    def stats(self) -> dict:
        now = time.monotonic()
        c = self.counters
        refused_keys = dict(self.node_allow.refused) if self.node_allow else {}
        return {
            "hub_session": self.session,
            "gallery": len(self.engine),
            "index": self.gallery.kind,
            "live_tracklets": len(self.engine.records),
            "nodes": {
                n.name: {
                    "session": n.session,
                    "key": n.key,
                    "cameras": n.cameras,
                    "connected": n.away_since is None and not n.finished,
                    "finished": n.finished,
                    "last_heard_s": round(now - n.last_heard, 2),
                    "gaps": n.gaps,
                    "summaries": n.summaries,
                }
                for n in self.nodes.values()
            },
            "summaries": c["summaries"],
            "steps": c["steps"],
            "malformed": c["malformed"],
            "replayed": c["replayed"],
            "refused": c["refused"],
            "refusals": dict(self.refusals),
            "refused_keys": refused_keys,
            "published": c["published"],
            "events_dropped": self.publisher.dropped if self.publisher else 0,
            "match_ms_mean": round(c["match_ms_total"] / max(c["steps"], 1), 3),
        }

    def poll_once(self, timeout_ms: int = 50, max_messages: int = 1000) -> None:
        if self.router.poll(timeout_ms):
            for _ in range(max_messages):
                try:
                    frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self.handle(frames)
        self.step()
        self.housekeeping()

    def run(self, stop: threading.Event) -> dict:
        log.info(
            "hub: session %s, nodes on %s%s, events on %s, model %s (%d-d), %d identities",
            self.session,
            self.cfg.bind,
            " (CURVE)" if self.cfg.curve else "",
            self.publisher.endpoint if self.publisher else "off",
            self.model_id,
            self.dim,
            len(self.engine),
        )
        try:
            while not stop.is_set():
                self.poll_once()
        finally:
            report = self.stats()
            self.close()
        return report

    def close(self) -> None:
        if getattr(self, "publisher", None) is not None:
            self.publisher.close()
            self.publisher = None
        self.router.close(0)
        self.guard.stop()
        if getattr(self, "store", None) is not None:
            self.store.close()
            self.store = None
