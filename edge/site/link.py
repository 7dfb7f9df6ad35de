"""A node's link to the site hub: one I/O thread that owns the DEALER socket.

ZeroMQ sockets are not thread-safe, so one thread does all the talking: hello until the hub
welcomes the node, then the outbox's steps in order (each message numbered, ``seq`` strictly
increasing), the node's bye once the outbox is empty after the end of the run, heartbeats, and
every message from the hub handed to the node (:meth:`LinkOwner.receive`). No word from the hub
for ``hub_timeout_s`` (or no answer at start): the node is told the hub is away
(:meth:`LinkOwner.hub_away`) and the link says hello again until the hub answers. A CURVE
handshake the hub refuses is logged as such (the node's key is not on its allow-list).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional, Protocol

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from edge.site.config import SiteConfig
from edge.site.outbox import Outbox
from edge.wire.site_protocol import encode, encode_tracklets

log = logging.getLogger("edge.site.node")  # the node's log lines keep their logger name

CLOSE_LINGER_MS = 500  # after close, ZeroMQ still sends what it queued (the bye) for this long, in the background

CurveKeys = tuple[tuple[bytes, bytes], bytes]  # ((public, secret) of the node, the hub's public key)


class LinkOwner(Protocol):
    """What the link reads and calls of its node (:class:`~edge.site.node.SiteEngine`)."""

    stats: dict[str, int]
    bye_pending: bool  # the run ended: say bye once the outbox is empty (under the lock)

    @property
    def scene_now(self) -> float:
        """The node's scene clock (heartbeats and bye carry it)."""
        ...

    @property
    def away(self) -> bool:
        """The node considers the hub away (an outage is open)."""
        ...

    def hub_away(self, since: float) -> None: ...

    def receive(self, frames: list[bytes], welcomed: bool) -> bool:
        """One message from the hub; returns whether the node is (still) welcomed."""
        ...


class HubLink:
    """The I/O thread (see the module docstring); :meth:`start` once the node is built."""

    def __init__(
        self,
        cfg: SiteConfig,
        context: zmq.Context,
        hello: dict[str, Any],
        keys: Optional[CurveKeys],
        routing_id: bytes,
        lock: threading.Lock,
        outbox: Outbox,
        node: LinkOwner,
    ):
        self.cfg = cfg
        self.context = context
        self.hello = hello  # the hello's fields but seq
        self.keys = keys
        self.routing_id = routing_id
        self.lock = lock
        self.outbox = outbox
        self.node = node
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="site-node", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float) -> None:
        """Stop the link, first letting a pending ``bye`` leave (within ``timeout``): without it the
        hub waits for this node's clock until its timeout, and so do the other nodes' final ids."""
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            with self.lock:
                if not self.node.bye_pending or self.node.away:
                    break
            time.sleep(0.01)
        self.stop.set()
        self._thread.join(max(0.1, deadline - time.monotonic()))

    def _socket(self) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing for a hub that is not there: the outbox keeps it
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.setsockopt(zmq.ROUTING_ID, self.routing_id)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if self.keys is not None:
            (public, secret), server = self.keys
            sock.curve_secretkey, sock.curve_publickey, sock.curve_serverkey = secret, public, server
        sock.connect(self.cfg.hub)
        return sock

    def _loop(self) -> None:
        node, outbox = self.node, self.outbox
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
            while not self.stop.is_set():
                now = time.monotonic()
                if not welcomed and now - last_hello >= self.cfg.heartbeat_s:
                    seq += 1
                    if send(encode("hello", {"seq": seq, **self.hello})):
                        last_hello = now
                if welcomed:
                    while True:
                        with self.lock:
                            if not outbox:
                                break
                            step_now, items, full = outbox.first()
                        frames = encode_tracklets(seq + 1, step_now, items)
                        if full:
                            frames[2] = frames[2][:-1] + b', "full": true}'
                        if not send(frames):
                            break
                        seq += 1
                        with self.lock:
                            outbox.sent_first(items)
                        node.stats["sent"] += len(items)
                    with self.lock:
                        bye = node.bye_pending and not outbox
                    if bye:
                        seq += 1
                        if send(encode("bye", {"seq": seq, "now": node.scene_now})):
                            with self.lock:
                                node.bye_pending = False
                    if now - last_beat >= self.cfg.heartbeat_s:
                        seq += 1
                        send(encode("heartbeat", {"seq": seq, "now": node.scene_now}))
                        last_beat = now
                    if now - last_heard > self.cfg.hub_timeout_s:
                        welcomed, trying_since = False, last_heard
                if not welcomed and not node.away and now - trying_since > self.cfg.hub_timeout_s:
                    node.hub_away(trying_since)
                if monitor.poll(0):
                    event = recv_monitor_message(monitor)
                    log.error(
                        "site: the hub %s refused our CURVE handshake (event %s): "
                        "is this node's key on its allow-list?",
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
                            was, welcomed = welcomed, node.receive(frames, welcomed)
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
            sock.close(linger=CLOSE_LINGER_MS)
