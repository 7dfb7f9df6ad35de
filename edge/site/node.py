"""An edge node's link to the site hub, standing in for the in-process identity engine.

:class:`SiteEngine` offers what :class:`~edge.pipeline.EdgePipeline` uses of
:class:`~edge.identity.IdentityEngine` (``update``, ``global_id``, ``identities``,
``take_final``, ``flush``, ``len``), but sends the tracklet summaries to the hub and applies the
site ids it returns. The pipeline thread never waits for the network: summaries go into a bounded
outbox, one I/O thread owns the DEALER socket (ZeroMQ sockets are not thread-safe).

While the hub is away (no heartbeat for ``hub_timeout_s``) the outbox keeps filling; past
``buffer`` summaries the oldest steps are coalesced (a later summary of a tracklet replaces an
older one, floor samples add up), so the state survives and only step granularity is lost. When
the hub answers again (or a restarted hub shows a new session), the node resends the latest state
of every tracklet the hub has not finalised, then carries on.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from ..identity import Decision, TrackletSummary
from .config import SiteConfig
from .keys import load_public, load_secret
from .protocol import HUB_KINDS, WireTracklet, decode, encode, encode_tracklets, model_id

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

    def __init__(self, cfg: SiteConfig, cameras: list[str], model_id: str, embedding_dim: int,
                 describe: Optional[Callable[[Key], tuple[float, int]]] = None, context: Optional[zmq.Context] = None):
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
        self.stats = {"sent": 0, "coalesced": 0, "dropped": 0, "resyncs": 0, "hub_gaps": 0}
        self._bye = False
        # keys are read here, on the caller's thread, so a bad key file stops edge.run with one line
        self._keys = None if cfg.curve is None else (load_secret(cfg.curve.secret_key), load_public(cfg.curve.server_key))
        self._routing_id = f"{cfg.node}.{uuid.uuid4().hex}".encode()  # never published (stats show the session)
        self._thread = threading.Thread(target=self._loop, name="site-node", daemon=True)
        self._thread.start()

    # --- what the pipeline calls --------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.identities)

    def update(self, summaries, now: float) -> list[Decision]:
        """Queue the changed tracklets for the hub; return the hub's decisions received since."""
        if self.refused:
            raise HubRefused(f"the site hub refused node {self.cfg.node}: {self.refused}")
        with self._lock:
            self._now = max(self._now, now)
            items = [self._wire(s) for s in summaries]
            self._outbox.append((now, items, False))
            self._queued += len(items)
            self._bound()
            out, self._decisions = self._decisions, []
        return out

    def global_id(self, key: Key) -> Optional[int]:
        return self._ids.get(key)

    def take_final(self) -> list[tuple[Key, int]]:
        with self._lock:
            out, self._final = self._final, []
        return out

    def flush(self, now: Optional[float] = None) -> list[Decision]:
        """End of the run: say bye and wait (``flush_timeout_s``) for the hub's final ids; tracklets
        still without one keep the last site id the hub gave them."""
        with self._lock:
            self._bye = True
        deadline = time.monotonic() + self.cfg.flush_timeout_s
        while time.monotonic() < deadline and not self.refused:
            with self._lock:
                waiting = [k for k, s in self.records.items() if s.ended]
            if not waiting:
                break
            time.sleep(0.05)
        with self._lock:
            left = [(k, self._ids[k]) for k, s in self.records.items() if s.ended and k in self._ids]
            if left:
                log.warning("site: %d tracklet(s) without a final id from the hub after %.0f s: their last site id is kept",
                            len(left), self.cfg.flush_timeout_s)
            self._final += left
            for k, _ in left:
                self.records.pop(k, None)
            out, self._decisions = self._decisions, []
        return out  # the hub's decisions that came while waiting

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    # --- summaries on the wire ------------------------------------------------------------------
    def _wire(self, s: TrackletSummary, full: bool = False) -> WireTracklet:
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
        return WireTracklet(s.camera, s.local_id, s.first_seen, s.last_seen, s.n_embeddings, s.weight, s.first_box, s.last_box,
                            s.ended, conf, frame, appearance, floor)

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
        """The hub (re)welcomed us: it gets the latest full state of every unfinished tracklet."""
        with self._lock:
            self._outbox.clear()
            items = [self._wire(s, full=True) for s in self.records.values()]
            for start in range(0, max(len(items), 1), RESYNC_CHUNK):  # one message stays within the protocol's array limit
                self._outbox.append((self._now, items[start:start + RESYNC_CHUNK], True))
            self._queued = len(items)
            self.stats["resyncs"] += 1

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
        last_heard = time.monotonic()

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
                    if send(encode("hello", {"seq": seq, "node": self.cfg.node, "session": self.session, "model_id": self.model_id,
                                             "embedding_dim": self.dim, "cameras": self.cameras})):
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
                        welcomed = self.connected = False
                        self.stats["hub_gaps"] += 1
                        log.warning("site: no word from the hub %s for %.1f s: buffering (up to %d summaries)", self.cfg.hub,
                                    now - last_heard, self.cfg.buffer)
                if monitor.poll(0):
                    event = recv_monitor_message(monitor)
                    log.error("site: the hub %s refused our CURVE handshake (event %s): is this node's key on its allow-list?",
                              self.cfg.hub, event["event"])
                if sock.poll(20):
                    while True:
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        last_heard = time.monotonic()
                        try:
                            welcomed = self._handle(frames, welcomed)
                        except (KeyError, TypeError, ValueError) as exc:  # a message of the right kind with bad fields
                            log.warning("site: dropped a malformed %s message from the hub: %s", frames[1][:16] if len(frames) > 1 else b"?", exc)
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
            with self._lock:
                for cam, lid, gid in h.get("ids", []):
                    self._ids[(cam, lid)] = gid
            self._resync()
            self.connected = True
            log.info("site: welcomed by the hub %s (session %s)", self.cfg.hub, self.hub_session)
            return True
        if msg.kind == "heartbeat" and welcomed and h.get("hub_session") != self.hub_session:
            return False  # a restarted hub: hello again, then resync
        if msg.kind == "heartbeat" and not welcomed:
            return False
        if msg.kind == "ids":
            with self._lock:
                self._apply(h)
        return welcomed

    def _apply(self, h: dict) -> None:
        for cam, lid, gid in h.get("ids", []):
            key = (cam, lid)
            old = self._ids.get(key)
            if old is not None and old in self.identities:
                self.identities[old].members.discard(key)
            self._ids[key] = gid
            ident = self.identities.setdefault(gid, NodeIdentity(gid))
            ident.members.add(key)
            ident.cameras.add(cam)
        for d in h.get("decisions", []):
            ident = self.identities.setdefault(d["global_id"], NodeIdentity(d["global_id"]))
            ident.cameras |= set(d.get("cameras", []))
            ident.last_seen = max(ident.last_seen, float(d.get("last_seen") or 0.0))
            self._decisions.append(Decision(d["kind"], d["global_id"], (d["camera"], d["local_id"]), d.get("previous"), tuple(d.get("cameras", []))))
        for cam, lid, gid in h.get("final", []):
            key = (cam, lid)
            self._ids[key] = gid
            self._final.append((key, gid))
            self.records.pop(key, None)
            self._sent.pop(key, None)
            ident = self.identities.get(gid)
            if ident is not None:
                ident.members.discard(key)


def site_engine(cfg, reid, describe: Optional[Callable[[Key], tuple[float, int]]] = None) -> SiteEngine:
    """The node side for an :class:`~edge.config.EdgeConfig` with a ``site:`` section."""
    if reid is None:
        raise ValueError("site: a node needs a reid section (the hub matches appearance)")
    return SiteEngine(cfg.site, [c.id for c in cfg.cameras], model_id(cfg.reid.model), reid.meta.embedding_dim, describe)
