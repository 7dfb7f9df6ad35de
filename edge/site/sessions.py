"""The hub's side of the nodes' sessions: the ROUTER socket, hello/welcome, sequence numbers, gaps.

Nodes connect a DEALER to the hub's ROUTER (the ZeroMQ guide's asynchronous client/server).
Every node message carries a sequence number, strictly increasing per node session; a duplicate
or replayed one is dropped and counted. Both sides heartbeat; a node silent for
``node_timeout_s`` is a *gap*, reported in the stats. A node that comes back with the same
session keeps its site ids (the welcome lists them); a new session (the node restarted) ends the
old session's tracklets in the :class:`~edge.site.mirror.Mirror`. With CURVE, a node's name is
its key file's name in the allow-list. Summaries are queued per node (:attr:`NodeState.pending`)
for the hub's steps (:mod:`edge.site.steps`); a message never raises out of :meth:`Sessions.handle`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Optional

import zmq

from edge.site.clock_watch import ClockWatch
from edge.site.hub_config import HubConfig
from edge.site.mirror import Mirror
from edge.wire.curve import AllowList, Guard, allow_list_names, key_id
from edge.wire.site_protocol import (
    NODE_KINDS,
    DimensionError,
    ProtocolError,
    WireTracklet,
    decode,
    decode_tracklets,
    encode,
)

log = logging.getLogger("edge.site.hub_service")  # the hub's log lines keep their logger name

PendingStep = tuple[float, list[WireTracklet], bool]  # (node's scene time, summaries, full: a resync)


@dataclass
class NodeState:
    """One node's current session, as the hub sees it."""

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
    live: bool = False  # its scene time is its wall clock (not files in lockstep): checked (ClockWatch)
    pending: deque[PendingStep] = field(default_factory=deque)  # steps waiting for the engine (lockstep)


class Sessions:
    """The ROUTER socket and every node's session (see the module docstring)."""

    def __init__(
        self,
        cfg: HubConfig,
        context: zmq.Context,
        guard: Guard,
        hub_session: str,
        model_id: str,
        dim: int,
        mirror: Mirror,
        counters: defaultdict[str, float],
    ):
        """Bind the ROUTER socket; a bind that fails closes it and raises :class:`RuntimeError`."""
        self.cfg = cfg
        self.hub_session = hub_session
        self.model_id, self.dim = model_id, dim
        self.mirror = mirror
        self.counters = counters
        self.clock = ClockWatch("the site")  # a live node's clock far ahead: said
        self.router = context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a node that reconnects takes its name back
        self.router.setsockopt(zmq.SNDHWM, 10000)
        self.node_allow: Optional[AllowList] = None
        self.key_names: dict[str, str] = {}  # with CURVE: a node's name is its key file's name
        if cfg.curve is not None:
            self.node_allow = guard.serve(self.router, cfg.curve.secret_key, cfg.curve.allow, "nodes")
            self.key_names = allow_list_names(cfg.curve.allow)
        try:
            self.router.bind(cfg.bind)
        except zmq.ZMQError as exc:
            self.router.close(0)
            raise RuntimeError(f"cannot bind the hub to {cfg.bind}: {exc}") from exc
        self.nodes: dict[str, NodeState] = {}
        self.refusals: dict[str, str] = {}

    def send(self, routing_id: bytes, kind: str, header: dict) -> None:
        """Never waits: a node that went away or does not keep up resyncs on return."""
        try:
            self.router.send_multipart([routing_id, *encode(kind, header)], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.debug("send %s to %r: %s", kind, routing_id, exc)

    def _refuse(self, routing_id: bytes, node: str, reason: str) -> None:
        self.counters["refused"] += 1
        self.refusals[node] = reason
        log.error("node %s refused: %s", node, reason)
        self.send(routing_id, "refused", {"reason": reason})
        state = self.nodes.get(node)
        if state is not None and state.routing_id == routing_id:
            del self.nodes[node]

    def handle(self, frames: list[zmq.Frame]) -> None:
        """One message from a node; a bad one is dropped and counted, never raised."""
        routing_id = frames[0].bytes
        user: Optional[str] = None  # the CURVE key (z85) the message came with
        try:
            got = frames[1].get("User-Id") if len(frames) > 1 else None
            user = got if isinstance(got, str) else None  # pyzmq gives a str for User-Id
        except zmq.ZMQError:
            pass
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
                self.send(routing_id, "refused", {"reason": "say hello first", "retry": True})
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
                if node.live:
                    self.clock.check(node.name, node.session, now, time.time())
                foreign = sorted({t.camera for t in items} - set(node.cameras))
                if foreign:
                    raise ProtocolError(f"cameras {foreign} are not node {node.name}'s")
                node.pending.append((now, items, bool(msg.header.get("full"))))
                node.summaries += len(items)
                self.counters["summaries"] += len(items)
                self.send(routing_id, "ack", {"seq": seq})
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
                return None
            old.routing_id, old.last_seq = routing_id, h["seq"]
            self._heard(old)
            log.info("node %s: back (session %s)", name, session)
        else:
            if old is not None:
                self.mirror.end_session(old.name, old.session)
                log.info("node %s: session %s ended (node restarted)", old.name, old.session)
            state = NodeState(
                name,
                session,
                routing_id,
                key_id(user) if user else "",
                list(cameras),
                last_seq=h["seq"],
                live=h.get("live") is True,
            )
            if old is not None:
                state.gaps = old.gaps
            self.nodes[name] = state
            self.mirror.new_session(cameras)
            log.info(
                "node %s: session %s, cameras %s%s", name, session, cameras, f", key {state.key}" if state.key else ""
            )
        self.send(routing_id, "welcome", {"hub_session": self.hub_session, "ids": self.mirror.told_ids(name, session)})
        return None

    def _heard(self, node: NodeState) -> None:
        now = time.monotonic()
        if node.away_since is not None:
            gap = now - node.away_since + self.cfg.node_timeout_s
            node.gaps.append(round(gap, 2))
            log.warning("node %s: back after a gap of %.1f s", node.name, gap)
            node.away_since = None
        node.last_heard = now

    def heartbeat(self, now: float) -> None:
        """Beat to every node; one silent for ``node_timeout_s`` starts a gap."""
        for n in self.nodes.values():
            self.send(n.routing_id, "heartbeat", {"hub_session": self.hub_session})
            if n.away_since is None and not n.finished and now - n.last_heard > self.cfg.node_timeout_s:
                n.away_since = now
                log.warning("node %s: no word for %.1f s (gap)", n.name, now - n.last_heard)

    def stats(self, now: float) -> dict[str, dict]:
        """Per node, what the hub's stats show."""
        return {
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
        }

    def close(self) -> None:
        self.router.close(0)
