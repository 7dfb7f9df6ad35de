"""A node's summaries messages into its region's stream: nothing lost, nothing twice.

Each message gets an id (node, session, its number) that the server remembers for the stream's
duplicate window, and a region hub drops a message whose site-protocol ``seq`` it already had
(:class:`~edge.site.tracklet_log.StepReader`), so a message sent again after a lost
acknowledgement is stored and decided once. Messages wait in a bounded buffer, in order, until the
stream has acknowledged them: while the link is down the node keeps running (its own engine
decides, ``edge/site/node.py``) and the buffer fills; when it is back they go out in order. A
buffer that reaches ``max_buffered`` drops its oldest message but the session's ``hello`` and
counts it (a node cut off longer than the bound allows loses its oldest summaries, said in its
stats; an appearance that changed in a dropped message reaches the hub with the next change). The
buffer is in memory: a node that restarts while cut off loses what it held, unless it replays its
cameras and carries on its session (``edge/stream/resume.py``): then the messages the stream
already holds (``already``) are not sent again, and the others are made anew.

Callers are synchronous (the edge pipeline); the NATS client runs on its own asyncio thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Optional

from nats.errors import MaxPayloadError

from edge.stream.config import MAX_BUFFERED
from edge.stream.frames import pack
from edge.stream.hub_watch import HubWatch
from edge.stream.names import (
    EPOCH_HEADER,
    LIVE_HEADER,
    MSG_ID_HEADER,
    NODE_HEADER,
    REPLAY_HEADER,
    SESSION_HEADER,
    Region,
)
from edge.stream.resume import Unfinished
from edge.stream.streams import connect, ensure_streams, retry

log = logging.getLogger("edge.stream")

RETRY_S = 0.25


class SummaryPublisher:
    """``send(frames)`` queues one site-protocol message for the region's stream (see the module docstring)."""

    def __init__(
        self,
        servers: list[str],
        region: Region,
        node: str,
        session: str,
        max_buffered: int = MAX_BUFFERED,
        replicas: int = 1,
        on_hub: Optional[Callable[[bool, float], None]] = None,
        already: Optional[Unfinished] = None,
        replay: str = "",
    ):
        """``on_hub(away, since)``: the region's hub found away or back (:class:`HubWatch`);
        ``already``: the session's messages the stream holds (a resumed session's); ``replay``: a
        replayable run's cameras and settings, hashed, in each message's headers."""
        self.servers, self.region, self.node, self.session = servers, region, node, session
        self.already = already
        self.replay = replay
        self.live = not replay  # a replayable run's scene clock runs as fast as it computes (kept in new sessions)
        self.resume_differs = False  # the replay's message at ``already.sent`` is not the stored one
        self.epoch: Optional[float] = None  # the node's scene clock origin, in each message's headers once known
        self.replicas = replicas
        self.max_buffered = max_buffered
        self._buffer: deque[tuple[str, int, bytes]] = deque()  # (session, its message number, payload)
        self._lock = threading.Lock()
        self._count = 0
        self.sent = self.dropped = self.duplicates = self.too_large = 0
        self.down_since: Optional[float] = None  # the link is down since (None: up, or not tried yet)
        self.outages = 0
        self.hub_watch = HubWatch(region, node, on_hub)
        self._wake: Optional[asyncio.Event] = None
        self._stopping = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),), daemon=True)
        self._thread.start()

    def send(self, frames: list[bytes]) -> None:
        with self._lock:
            self._count += 1
            if self.already is not None and self._count <= self.already.sent:
                if frames[1:2] != [b"bye"]:
                    self._check_replay(pack(frames))
                    return
                log.warning(  # a bye numbered past what the stream holds: else it would be taken for one of them
                    "stream: node %s's replay ended at message %d, before the %d its killed run had sent",
                    self.node, self._count, self.already.sent,
                )  # fmt: skip
                self._count = self.already.sent + 1
            self._buffer.append((self.session, self._count, pack(frames)))
            if len(self._buffer) > self.max_buffered:
                head = self._buffer.popleft()
                if head[1] == 1:  # the session's hello: without it the hub can read none of the others
                    self._buffer.popleft()
                    self._buffer.appendleft(head)
                self.dropped += 1
        if self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _check_replay(self, payload: bytes) -> None:
        """A resumed session's message the stream holds already: not sent; the last of them must be
        the stored one (else the run is not the killed one's replay: said once)."""
        assert self.already is not None
        if self._count == self.already.sent and payload != self.already.last:
            self.resume_differs = True
            log.warning(
                "stream: node %s resumed session %s, but its message %d is not the one the stream holds: "
                "other cameras, model or settings than the killed run's? its next messages continue the session",
                self.node, self.session, self._count,
            )  # fmt: skip

    def new_session(self, session: str) -> int:
        """From now on, messages of ``session`` (numbered from 1); the old session's still
        buffered are dropped, as its hub would refuse them (how many: returned)."""
        with self._lock:
            left = len(self._buffer)
            self._buffer.clear()
            self.session, self._count, self.already = session, 0, None
            self.replay = ""  # never carried on after a kill: its messages are no replay of the cameras' run
        return left

    @property
    def made(self) -> int:
        """Messages of this session made so far (sent, buffered, or held by the stream already)."""
        return self._count

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the buffer is empty: every message sent so far is in the stream but the
        ``dropped`` ones (False: still some after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while self._buffer and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._buffer

    def stats(self) -> dict[str, Any]:
        down = None if self.down_since is None else round(time.monotonic() - self.down_since, 1)
        return {
            "sent": self.sent,
            "buffered": self.buffered,
            "dropped": self.dropped,
            "duplicates": self.duplicates,
            "too_large": self.too_large,
            "link_down_s": down,
            "outages": self.outages,
            "resumed_after": None if self.already is None else self.already.sent,
            "resume_differs": self.resume_differs,
            **self.hub_watch.stats(),
        }

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is buffered (up to ``timeout_s``), then disconnect."""
        self.flush(timeout_s)
        self._stopping = True
        if self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():  # its selector and self-pipe, not left to the garbage collector
            self._loop.close()

    async def _run(self) -> None:
        self._wake = asyncio.Event()
        stopping = lambda: self._stopping  # noqa: E731
        found: list[Any] = []  # the JetStream context once a server answers (the hub watch runs from the start)
        watching = asyncio.ensure_future(self.hub_watch.run(lambda: found[0] if found else None, stopping))
        nc = await connect(self.servers, f"{self.node} publisher", self._link_down, give_up=stopping,
                           failed=self._link_down_now)  # fmt: skip
        if nc is None:  # closed before any server answered
            watching.cancel()
            try:
                await watching
            except asyncio.CancelledError:
                pass
            return
        js = nc.jetstream()  # the link is up once a publish is acknowledged
        found.append(js)
        await retry(lambda: ensure_streams(js, self.region, self.replicas), stopping, self._link_down_now, RETRY_S)
        self._link_up_now()
        subject = self.region.summaries_subject(self.node)
        while not self._stopping:
            with self._lock:  # new_session may empty the buffer from the pipeline's thread
                head = self._buffer[0] if self._buffer else None
            if head is None:
                self._wake.clear()
                if not self._buffer:
                    await self._wake.wait()
                continue
            session, number, payload = head
            headers = {
                MSG_ID_HEADER: f"{self.node}-{session}-{number}",
                NODE_HEADER: self.node,
                SESSION_HEADER: session,
            }
            if self.epoch is not None:
                headers[EPOCH_HEADER] = repr(self.epoch)
            if self.replay:
                headers[REPLAY_HEADER] = self.replay
            if self.live:
                headers[LIVE_HEADER] = "1"
            try:
                ack = await js.publish(subject, payload, timeout=2.0, headers=headers)
            except MaxPayloadError:  # never taken, however often sent: dropped, so the rest can go
                self._too_large(session, number, len(payload))
                continue
            except Exception as exc:  # noqa: BLE001 - timeout, no responders, reconnecting: keep it and retry
                self._link_down_now(exc)
                await asyncio.sleep(RETRY_S)
                continue
            self._link_up_now()
            with self._lock:
                if self._buffer and self._buffer[0][:2] == (session, number):
                    self._buffer.popleft()
            self.sent += 1
            self.duplicates += int(bool(ack.duplicate))
        watching.cancel()
        try:
            await watching
        except asyncio.CancelledError:
            pass
        try:  # the client's own tasks end here, not with the loop (else "Event loop is closed" at exit)
            await nc.close()
        except Exception:  # noqa: BLE001 - a server gone while closing: nothing left to send
            pass

    def _too_large(self, session: str, number: int, size: int) -> None:
        with self._lock:
            if self._buffer and self._buffer[0][:2] == (session, number):
                self._buffer.popleft()
        self.too_large += 1
        log.error(
            "stream: node %s's message %d (%d bytes) is past the servers' max_payload: dropped (its tracklets get "
            "their site ids from later messages; raise max_payload in the servers' config)", self.node, number, size,
        )  # fmt: skip

    async def _link_down(self) -> None:
        self._link_down_now("disconnected")

    def _link_down_now(self, why: object) -> None:
        if self.down_since is None and not self._stopping:
            self.down_since = time.monotonic()
            self.outages += 1
            log.warning("stream: node %s cannot reach region %s (%s): buffering", self.node, self.region.name, why)

    def _link_up_now(self) -> None:
        if self.down_since is not None:
            if self.outages:
                log.info(
                    "stream: node %s reaches region %s again after %.1f s; %d messages to send",
                    self.node, self.region.name, time.monotonic() - self.down_since, self.buffered,
                )  # fmt: skip
            self.down_since = None
