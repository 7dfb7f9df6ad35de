"""An edge node's link to the site hub, standing in for the in-process identity engine.

:class:`SiteEngine` offers what :class:`~edge.runtime.pipeline.EdgePipeline` uses of
:class:`~edge.identity.IdentityEngine` (``update``, ``global_id``, ``identities``,
``take_final``, ``flush``, ``len``), but sends the tracklet summaries to the hub and applies the
site ids it returns. The pipeline thread never waits for the network: summaries go into a bounded
outbox, one I/O thread owns the DEALER socket (ZeroMQ sockets are not thread-safe).

While the hub is away (no answer for ``hub_timeout_s``, at start or later) the node says so in a
warning naming the hub's endpoint and, given a ``local`` engine factory (``edge.run`` gives it the
node's own :class:`~edge.identity.IdentityEngine`, the single-box engine), goes on deciding: the
tracklets it knows site ids of keep them, the others get *provisional* ids from
``site.local_ids_from`` (far above any hub id). The outbox keeps filling meanwhile; past ``buffer``
summaries the oldest steps are coalesced (a later summary of a tracklet replaces an older one,
floor samples add up), so the state survives and only step granularity is lost. When the hub
answers again (or a restarted hub shows a new session), the node resends the latest state of
every tracklet the hub has not finalised, those decided here included, and maps each provisional
id onto the site id the hub gives (:meth:`SiteEngine.report`); the hub decides from then on.
Ids and finals from the hub that come while the node is not welcomed (a stalled hub catching up)
are ignored, so a tracklet is never finalised by both sides. Outages (from, to, seconds) are in
the report.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from edge.identity import Decision, Identity, IdentityEngine, TrackletSummary
from edge.site.config import SiteConfig
from edge.wire.curve import load_public, load_secret
from edge.wire.site_protocol import HUB_KINDS, WireTracklet, decode, encode, encode_tracklets, model_id

RESYNC_CHUNK = 2000  # tracklets per resync message: 5 arrays each stays far below protocol.MAX_ARRAYS

log = logging.getLogger(__name__)

Key = tuple[str, int]


class HubRefused(RuntimeError):
    """The hub refused this node (model, embedding size, cameras): the reason in one line."""


@dataclass
class NodeIdentity:
    """What a node knows of a site identity (enough for its events and snapshot)."""

    global_id: int
    cameras: set[str] = field(default_factory=set)
    last_seen: float = 0.0
    members: set[Key] = field(default_factory=set)
    embedding: Optional[np.ndarray] = None


def _merge(older: list[WireTracklet], newer: list[WireTracklet]) -> list[WireTracklet]:
    """Two steps as one: per tracklet the newer summary, with the older appearance if the newer has
    none and both steps' floor samples."""
    out = {(w.camera, w.local_id): w for w in older}
    for w in newer:
        o = out.get((w.camera, w.local_id))
        if o is not None:
            if w.appearance is None:
                w.appearance = o.appearance
            if o.floor is not None:
                w.floor = o.floor if w.floor is None else np.concatenate([o.floor, w.floor])
        out[(w.camera, w.local_id)] = w
    return list(out.values())


class SiteEngine:
    """The node side of the site (see the module docstring)."""

    def __init__(
        self,
        cfg: SiteConfig,
        cameras: list[str],
        model_id: str,
        embedding_dim: int,
        describe: Optional[Callable[[Key], tuple[float, int]]] = None,
        context: Optional[zmq.Context] = None,
        local: Optional[Callable[[], IdentityEngine]] = None,
    ):
        """``local``: makes a fresh identity engine with the node's settings, used while the hub is
        away; without it the node only buffers (its tracklets get no global id meanwhile)."""
        self.cfg = cfg
        self.cameras = list(cameras)
        self.model_id, self.dim = model_id, int(embedding_dim)
        self.describe = describe  # key -> (detection score, frame index) for the hub's events
        self.session = uuid.uuid4().hex[:12]
        self.context = context or zmq.Context.instance()
        self.identities: dict[int, NodeIdentity] = {}
        self.records: dict[Key, TrackletSummary] = {}  # latest summary of every tracklet not yet final
        self._ids: dict[Key, int] = {}
        self._sent: dict[Key, tuple[int, float]] = {}  # what the hub has: (n_embeddings, last floor time)
        self._outbox: deque = deque()  # (now, [WireTracklet], full: a resync chunk)
        self._queued = 0
        self._decisions: list[Decision] = []
        self._final: list[tuple[Key, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._now = 0.0
        self.refused: Optional[str] = None
        self.hub_session: Optional[str] = None
        self.connected = False
        self.stats = {
            "sent": 0,
            "coalesced": 0,
            "dropped": 0,
            "resyncs": 0,
            "hub_gaps": 0,
            "local_decisions": 0,
            "provisional_ids": 0,
            "unreconciled_dropped": 0,
            "late_ignored": 0,
        }
        self._bye = False
        self._local_factory = local
        self._local: Optional[IdentityEngine] = None  # deciding here while the hub is away
        self.local_base = cfg.local_id_base()
        self._next_local = self.local_base
        self._away = False
        self.answered = False  # the hub welcomed this node at least once
        self._outages: list[list[Optional[float]]] = []  # [from, to] (wall clock; to None: still away)
        self._reconcile: dict[
            Key, tuple[TrackletSummary, int]
        ] = {}  # final here (id given), not yet decided by the hub
        self.reconciled: dict[int, set[int]] = {}  # provisional id -> the site ids the hub gave its tracklets
        # keys are read here, on the caller's thread, so a bad key file stops edge.run with one line
        self._keys = (
            None if cfg.curve is None else (load_secret(cfg.curve.secret_key), load_public(cfg.curve.server_key))
        )
        self._routing_id = f"{cfg.node}.{uuid.uuid4().hex}".encode()  # never published (stats show the session)
        self._thread = threading.Thread(target=self._loop, name="site-node", daemon=True)
        self._thread.start()

    # --- what the pipeline calls --------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.identities)

    def update(self, summaries, now: float) -> list[Decision]:
        """Queue the changed tracklets for the hub; return the hub's decisions received since (or,
        while the hub is away, the node's own)."""
        if self.refused:
            raise HubRefused(f"the site hub refused node {self.cfg.node}: {self.refused}")
        summaries = list(summaries)
        with self._lock:
            self._now = max(self._now, now)
            items = [self._wire(s) for s in summaries]
            self._outbox.append((now, items, False))
            self._queued += len(items)
            self._bound()
            if self._away and self._local_factory is not None:
                self._decide_locally(summaries, now)
            out, self._decisions = self._decisions, []
        return out

    def is_provisional(self, gid: int) -> bool:
        """An id this node gave while the hub was away (not a site id)."""
        return self.local_base <= gid < self._next_local

    def global_id(self, key: Key) -> Optional[int]:
        return self._ids.get(key)

    def take_final(self) -> list[tuple[Key, int]]:
        with self._lock:
            out, self._final = self._final, []
        return out

    def flush(self, now: Optional[float] = None) -> list[Decision]:
        """End of the run: say bye and wait (``flush_timeout_s``) for the hub's final ids, saying
        so. A hub that is away (or goes away meanwhile) is not waited for: the node's own engine
        decides what is left (provisional ids); without one, tracklets keep their last site id."""
        with self._lock:
            self._bye = True
            waiting = self._waiting()
            away = self._away
        if waiting and not away and self.cfg.flush_timeout_s > 0:
            log.info(
                "site: waiting up to %.0f s for the hub %s: the final ids of %d tracklet(s)%s",
                self.cfg.flush_timeout_s,
                self.cfg.hub,
                waiting,
                ""
                if self.connected
                else f" (it has not answered yet; away after {self.cfg.hub_timeout_s:g} s without an answer)",
            )
        deadline = time.monotonic() + self.cfg.flush_timeout_s
        while time.monotonic() < deadline and not self.refused:
            with self._lock:
                if self._away and self._local_factory is not None:
                    break
                waiting = self._waiting()
            if not waiting:
                break
            time.sleep(0.05)
        with self._lock:
            left = [k for k, s in self.records.items() if s.ended]
            if left and self._local_factory is not None:
                if not self._away:
                    log.warning(
                        "site: %d tracklet(s) without a final id from the hub %s after %.0f s: decided here (a site id given "
                        "stays, the others get provisional ids)",
                        len(left),
                        self.cfg.hub,
                        self.cfg.flush_timeout_s,
                    )
                self._finish_locally(self._now if now is None else now)
            elif left:
                kept = [(k, self._ids[k]) for k in left if k in self._ids]
                log.warning(
                    "site: %d tracklet(s) without a final id from the hub %s after %.0f s: %d keep their last site id, %d get none",
                    len(left),
                    self.cfg.hub,
                    self.cfg.flush_timeout_s,
                    len(kept),
                    len(left) - len(kept),
                )
                self._final += kept
                for k in left:
                    self.records.pop(k, None)
            out, self._decisions = self._decisions, []
        return out  # the hub's decisions that came while waiting (or the node's own)

    def _waiting(self) -> int:
        """Tracklets whose final id from the hub the end of the run waits for: the ended ones, and
        (while it is there) those decided here during an outage, for the report's mapping."""
        return sum(1 for s in self.records.values() if s.ended) + (len(self._reconcile) if self.connected else 0)

    def report(self) -> dict:
        """What the run report shows of the site link: the hub's outages and the provisional ids."""
        with self._lock:
            outages = [
                {
                    "from": _iso(a),
                    "to": None if b is None else _iso(b),
                    "seconds": round((time.time() if b is None else b) - a, 1),
                }
                for a, b in self._outages
            ]
            return {
                "node": self.cfg.node,
                "hub": self.cfg.hub,
                "answered": self.answered,
                "connected": self.connected,
                "hub_outages": outages,
                "provisional_from": self.local_base,
                "reconciled": {str(k): sorted(v) for k, v in sorted(self.reconciled.items())},
                "unreconciled": len(self._reconcile),
                **self.stats,
            }

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    # --- summaries on the wire ------------------------------------------------------------------
    def _wire(self, s: TrackletSummary, full: bool = False, track: bool = True) -> WireTracklet:
        if track:  # a tracklet decided here and already final is sent, not tracked
            self.records[s.key] = s
        n_sent, floor_sent = (-1, -np.inf) if full else self._sent.get(s.key, (-1, -np.inf))
        floor = None
        if s.floor is not None and len(s.floor):
            times, points = s.floor.arrays()
            new = times > floor_sent
            if new.any():
                floor = np.column_stack([times[new], points[new]])
                floor_sent = float(times[-1])
        appearance = s.appearance if s.n_embeddings != n_sent else None
        self._sent[s.key] = (s.n_embeddings, floor_sent)
        conf, frame = self.describe(s.key) if self.describe else (0.0, 0)
        return WireTracklet(
            s.camera,
            s.local_id,
            s.first_seen,
            s.last_seen,
            s.n_embeddings,
            s.weight,
            s.first_box,
            s.last_box,
            s.ended,
            conf,
            frame,
            appearance,
            floor,
        )

    def _bound(self) -> None:
        while self._queued > self.cfg.buffer and len(self._outbox) > 1:
            t0, a, f0 = self._outbox.popleft()
            t1, b, f1 = self._outbox.popleft()
            merged = _merge(a, b)
            self._queued += len(merged) - len(a) - len(b)
            self._outbox.appendleft((max(t0, t1), merged, f0 or f1))
            self.stats["coalesced"] += 1
        if self._queued > self.cfg.buffer and self._outbox:  # one step bigger than the buffer: drop live, keep ended
            now, items, full = self._outbox.popleft()
            keep = [w for w in items if w.ended][: self.cfg.buffer]
            kept = {id(w) for w in keep}
            for w in items:
                if id(w) not in kept:  # never sent: the next summary of it must carry everything again
                    self._sent.pop((w.camera, w.local_id), None)
            self.stats["dropped"] += len(items) - len(keep)
            self._queued += len(keep) - len(items)
            self._outbox.appendleft((now, keep, full))

    def _resync(self) -> None:
        """The hub (re)welcomed us: it gets the latest full state of every unfinished tracklet
        (the caller holds the lock)."""
        self._outbox.clear()
        items = [self._wire(s, full=True) for s in self.records.values()]
        items += [self._wire(s, full=True, track=False) for s, _ in self._reconcile.values()]
        for start in range(0, max(len(items), 1), RESYNC_CHUNK):  # one message stays within the protocol's array limit
            self._outbox.append((self._now, items[start : start + RESYNC_CHUNK], True))
        self._queued = len(items)
        self.stats["resyncs"] += 1

    # --- the hub away and back (I/O thread); deciding here meanwhile (pipeline thread, under the lock)
    def _hub_away(self, since: float) -> None:
        """No answer from the hub since ``since`` (monotonic): say so once, start an outage."""
        with self._lock:
            self._away = True
            self.connected = False
            self._outages.append([time.time() - (time.monotonic() - since), None])
            self.stats["hub_gaps"] += 1
        meanwhile = (
            f"node {self.cfg.node} decides identities itself meanwhile (provisional ids from {self.local_base}, "
            "mapped onto site ids when it is back)"
            if self._local_factory is not None
            else "its tracklets get no global id meanwhile"
        )
        log.warning(
            "site: the hub %s %s (nothing for %.1f s): %s; up to %d summaries are kept for it",
            self.cfg.hub,
            "stopped answering" if self.answered else "does not answer",
            time.monotonic() - since,
            meanwhile,
            self.cfg.buffer,
        )

    def _welcome(self, ids: list) -> None:
        """Welcomed: the hub's ids for our tracklets, the outage (if any) ends, everything the hub
        has not finalised is queued again. One critical section: were the lock released between
        these steps while still away, :meth:`update` could decide locally in the gap and put
        provisional ids over the hub's, with nothing to send them again."""
        with self._lock:
            for cam, lid, gid in ids:
                self._set_id((cam, lid), gid)
            self._hub_back()
            self._resync()

    def _hub_back(self) -> None:
        """The outage (if any) ends, the hub decides again (the caller holds the lock)."""
        if self._away:
            self._outages[-1][1] = time.time()
            lasted = self._outages[-1][1] - self._outages[-1][0]
            log.info(
                "site: the hub %s answers again after %.1f s: resending %d tracklet(s) and %d decided here meanwhile, for "
                "its site ids",
                self.cfg.hub,
                lasted,
                len(self.records),
                len(self._reconcile),
            )
        self._away = False
        self._local = None
        self.connected = self.answered = True

    def _decide_locally(self, summaries: list[TrackletSummary], now: float) -> None:
        if self._local is None:
            self._local = self._start_local()
            summaries = list(self.records.values())  # everything not final, this step's summaries included
        self._apply_local(self._local.update(summaries, now))

    def _start_local(self) -> IdentityEngine:
        """A fresh engine that knows the site ids the hub gave to live tracklets (so a person keeps
        theirs) and founds new identities from the next provisional id."""
        engine = self._local_factory()
        told: dict[Key, int] = {k: self._ids[k] for k in self.records if k in self._ids}
        identities = []
        for gid in sorted(set(told.values())):
            members = [self.records[k] for k, g in told.items() if g == gid]
            last = max(members, key=lambda m: m.last_seen)
            identities.append(
                Identity(
                    gid,
                    min(m.first_seen for m in members),
                    last.last_seen,
                    last.camera,
                    {m.camera for m in members},
                    last_box=last.last_box,
                )
            )
        engine.restore(identities, self._next_local)
        for key, gid in told.items():
            engine.adopt(self.records[key], gid)
        return engine

    def _apply_local(self, decisions: list[Decision]) -> None:
        """The local engine's ids, decisions and finals, as :meth:`_apply` takes the hub's."""
        engine = self._local
        for key, gid in engine.assignment.items():
            if self._ids.get(key) != gid:
                self._set_id(key, gid)
        for d in decisions:
            if d.kind in ("new", "reassigned") and d.global_id >= self._next_local:
                self._next_local = d.global_id + 1
                self.stats["provisional_ids"] += 1
            ident, mine = (
                engine.identities.get(d.global_id),
                self.identities.setdefault(d.global_id, NodeIdentity(d.global_id)),
            )
            if ident is not None:
                mine.cameras |= ident.cameras
                mine.last_seen = max(mine.last_seen, ident.last_seen)
                mine.embedding = ident.embedding
            self._decisions.append(d)
        self.stats["local_decisions"] += len(decisions)
        for key, gid in engine.take_final():
            self._ids[key] = gid
            self._final.append((key, gid))
            self._sent.pop(key, None)
            s = self.records.pop(key, None)
            if s is not None:  # the hub learns of it when it is back (its people may be seen elsewhere)
                self._reconcile[key] = (s, gid)
                if len(self._reconcile) > self.cfg.buffer:
                    self._reconcile.pop(next(iter(self._reconcile)))
                    self.stats["unreconciled_dropped"] += 1
            if gid in self.identities:
                self.identities[gid].members.discard(key)

    def _finish_locally(self, now: float) -> None:
        """End of a run without the hub: the local engine makes every tracklet final."""
        if self._local is None:
            self._local = self._start_local()
            self._apply_local(self._local.update(list(self.records.values()), now))
        self._apply_local(self._local.flush(now))

    def _set_id(self, key: Key, gid: int) -> None:
        old = self._ids.get(key)
        if old is not None and old != gid:
            if old in self.identities:
                self.identities[old].members.discard(key)
            self._note_site_id(old, gid)
        self._ids[key] = gid
        ident = self.identities.setdefault(gid, NodeIdentity(gid))
        ident.members.add(key)
        ident.cameras.add(key[0])

    def _note_site_id(self, old: int, gid: int) -> None:
        """The hub gave site id ``gid`` to a tracklet that had provisional id ``old``; a provisional
        identity left without tracklets is forgotten (the site id stands for that person now)."""
        if self.is_provisional(old) and not self.is_provisional(gid):
            seen = self.reconciled.setdefault(old, set())
            if gid not in seen:
                seen.add(gid)
                log.info("site: provisional id %d is site id %d", old, gid)
            ident = self.identities.get(old)
            if ident is not None and not ident.members and not self._away:
                del self.identities[old]

    # --- the I/O thread ---------------------------------------------------------------------------
    def _socket(self) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing for a hub that is not there: the outbox keeps it
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.setsockopt(zmq.ROUTING_ID, self._routing_id)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if self._keys is not None:
            (public, secret), server = self._keys
            sock.curve_secretkey, sock.curve_publickey, sock.curve_serverkey = secret, public, server
        sock.connect(self.cfg.hub)
        return sock

    def _loop(self) -> None:
        sock = self._socket()
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        seq = 0
        welcomed = False
        last_hello = last_beat = -np.inf
        last_heard = trying_since = time.monotonic()  # trying_since: the hub last heard of, or since we ask

        def send(kind_frames: list[bytes]) -> bool:
            try:
                sock.send_multipart(kind_frames, flags=zmq.NOBLOCK)
                return True
            except zmq.Again:
                return False

        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if not welcomed and now - last_hello >= self.cfg.heartbeat_s:
                    seq += 1
                    if send(
                        encode(
                            "hello",
                            {
                                "seq": seq,
                                "node": self.cfg.node,
                                "session": self.session,
                                "model_id": self.model_id,
                                "embedding_dim": self.dim,
                                "cameras": self.cameras,
                            },
                        )
                    ):
                        last_hello = now
                if welcomed:
                    while True:
                        with self._lock:
                            if not self._outbox:
                                break
                            step_now, items, full = self._outbox[0]
                        frames = encode_tracklets(seq + 1, step_now, items)
                        if full:
                            frames[2] = frames[2][:-1] + b', "full": true}'
                        if not send(frames):
                            break
                        seq += 1
                        with self._lock:
                            self._outbox.popleft()
                            self._queued -= len(items)
                        self.stats["sent"] += len(items)
                    with self._lock:
                        bye = self._bye and not self._outbox
                    if bye:
                        seq += 1
                        if send(encode("bye", {"seq": seq, "now": self._now})):
                            with self._lock:
                                self._bye = False
                    if now - last_beat >= self.cfg.heartbeat_s:
                        seq += 1
                        send(encode("heartbeat", {"seq": seq, "now": self._now}))
                        last_beat = now
                    if now - last_heard > self.cfg.hub_timeout_s:
                        welcomed, trying_since = False, last_heard
                if not welcomed and not self._away and now - trying_since > self.cfg.hub_timeout_s:
                    self._hub_away(trying_since)
                if monitor.poll(0):
                    event = recv_monitor_message(monitor)
                    log.error(
                        "site: the hub %s refused our CURVE handshake (event %s): is this node's key on its allow-list?",
                        self.cfg.hub,
                        event["event"],
                    )
                if sock.poll(20):
                    while True:
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        last_heard = time.monotonic()
                        try:
                            was, welcomed = welcomed, self._handle(frames, welcomed)
                            if was and not welcomed:  # a restarted hub: hello again
                                trying_since = last_heard
                        except (KeyError, TypeError, ValueError) as exc:  # a message of the right kind with bad fields
                            log.warning(
                                "site: dropped a malformed %s message from the hub: %s",
                                frames[1][:16] if len(frames) > 1 else b"?",
                                exc,
                            )
        finally:
            sock.disable_monitor()
            monitor.close(0)
            sock.close(0)

    def _handle(self, frames: list[bytes], welcomed: bool) -> bool:
        try:
            msg = decode(frames, HUB_KINDS)
        except ValueError as exc:
            log.warning("site: dropped a malformed message from the hub: %s", exc)
            return welcomed
        h = msg.header
        if msg.kind == "refused":
            if h.get("retry"):
                return False
            self.refused = str(h.get("reason"))
            log.error("site: the hub refused node %s: %s", self.cfg.node, self.refused)
            self._stop.set()
            return False
        if msg.kind == "welcome":
            if self.hub_session is not None and self.hub_session != h.get("hub_session"):
                log.info("site: the hub restarted (session %s): resending our tracklets", h.get("hub_session"))
            self.hub_session = h.get("hub_session")
            self._welcome(h.get("ids", []))
            log.info("site: welcomed by the hub %s (session %s)", self.cfg.hub, self.hub_session)
            return True
        if msg.kind == "heartbeat" and welcomed and h.get("hub_session") != self.hub_session:
            return False  # a restarted hub: hello again, then resync
        if msg.kind == "heartbeat" and not welcomed:
            return False
        if msg.kind == "ids" and not welcomed:  # late, from a hub we gave up on (or before its welcome): see _late
            self._late(h)
        elif msg.kind == "ids":
            with self._lock:
                self._apply(h)
        return welcomed

    def _late(self, h: dict) -> None:
        """The hub's ids and finals that come while the node is not welcomed (a stalled hub
        catching up) are dropped and counted: the node decides alone until the welcome, so no
        tracklet is finalised by both, and the welcome's resync sends every tracklet the node
        holds again, those it finalised meanwhile included, for the hub's ids."""
        dropped = len(h.get("ids", [])) + len(h.get("final", []))
        with self._lock:
            self.stats["late_ignored"] += dropped
        if dropped:
            log.info(
                "site: ignored %d id(s) from the hub %s that came while it was away (it gets our state again when it answers)",
                dropped,
                self.cfg.hub,
            )

    def _apply(self, h: dict) -> None:
        for cam, lid, gid in h.get("ids", []):
            self._set_id((cam, lid), gid)
        for d in h.get("decisions", []):
            ident = self.identities.setdefault(d["global_id"], NodeIdentity(d["global_id"]))
            ident.cameras |= set(d.get("cameras", []))
            ident.last_seen = max(ident.last_seen, float(d.get("last_seen") or 0.0))
            self._decisions.append(
                Decision(
                    d["kind"],
                    d["global_id"],
                    (d["camera"], d["local_id"]),
                    d.get("previous"),
                    tuple(d.get("cameras", [])),
                )
            )
        for cam, lid, gid in h.get("final", []):
            key = (cam, lid)
            kept = self._reconcile.pop(key, None)
            if kept is not None:  # decided here while the hub was away, its rows already written
                self._note_site_id(kept[1], gid)
            self._set_id(key, gid)
            if kept is None:  # a tracklet is final once: one decided here has had its final (the report maps its id)
                self._final.append((key, gid))
            self.records.pop(key, None)
            self._sent.pop(key, None)
            self.identities[gid].members.discard(key)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def site_engine(
    cfg,
    reid,
    describe: Optional[Callable[[Key], tuple[float, int]]] = None,
    local: Optional[Callable[[], IdentityEngine]] = None,
) -> SiteEngine:
    """The node side for an :class:`~edge.runtime.config.EdgeConfig` with a ``site:`` section; ``local``
    makes the engine that decides while the hub is away."""
    if reid is None:
        raise ValueError("site: a node needs a reid section (the hub matches appearance)")
    return SiteEngine(
        cfg.site, [c.id for c in cfg.cameras], model_id(cfg.reid.model), reid.meta.embedding_dim, describe, local=local
    )


def outage_line(site: dict, rows: int, provisional_rows: int) -> Optional[str]:
    """The end-of-run warning when the hub was away: what the global MOT rows and events hold."""
    outages = site["hub_outages"]
    if not outages:
        return None
    if not site["answered"]:
        what = "never answered"
    elif outages[-1]["to"] is None:
        what = f"was away at the end (since {outages[-1]['from']})"
    else:
        what = f"was away {len(outages)} time(s), {sum(o['seconds'] for o in outages):.0f} s in all"
    mapped = sum(len(v) for v in site["reconciled"].values())
    return (
        f"site: the hub {site['hub']} {what}: {provisional_rows} of {rows} global MOT rows carry node {site['node']}'s own "
        f"provisional ids (from {site['provisional_from']}), not site ids; {site['provisional_ids']} provisional id(s), "
        f"{len(site['reconciled'])} mapped onto {mapped} site id(s) since (report: site)"
    )
