"""Reading a stream in its one order, and starting again where it was when the reading stalls.

JetStream's ordered consumer lives on one server (the stream's leader when it was made, in memory,
one replica). When that server dies, the client is meant to notice the missing heartbeats and make
it again from the next position; a cluster that is still electing new leaders can refuse that, and
the reading then stops for good while the stream goes on growing (seen in about one run of three
of a test that kills one server of three). :class:`OrderedReader` watches for that: heard nothing
for :data:`STALL_S` while the stream holds messages past the last one read, it subscribes again
from the next position. Messages come in order and none twice, whichever consumer delivers them.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, DeliverPolicy

from edge.stream.names import HEARTBEAT_S

log = logging.getLogger("edge.stream")

STALL_S = 3.0  # nothing heard this long while the stream has more: subscribe again


class OrderedReader:
    """``await next(timeout)``: the next message of ``subject`` in ``stream`` (None: none yet)."""

    def __init__(
        self, js: Any, stream: str, subject: str, first: Optional[ConsumerConfig] = None, after: int = 0, what: str = ""
    ):
        """``first``: where the first subscription starts (default: the stream's start); ``after``:
        the position read already (a checkpoint's); later subscriptions start after the last read."""
        self.js, self.stream, self.subject, self.what = js, stream, subject, what or subject
        self.first = first
        self.last_seq = after  # the stream position of the last message read
        self.restarts = 0
        self._sub: Any = None
        self._heard = time.monotonic()

    async def subscribe(self) -> None:
        """Subscribe (again): from ``first`` until a message is read, then after the last one read."""
        config = self.first
        if self.last_seq:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.last_seq + 1)
        self._sub = await self.js.subscribe(
            self.subject, ordered_consumer=True, config=config, idle_heartbeat=HEARTBEAT_S
        )
        self._heard = time.monotonic()

    async def next(self, timeout: float) -> Any:
        try:
            msg = await self._sub.next_msg(timeout=timeout)
        except NatsTimeout:
            if time.monotonic() - self._heard >= STALL_S:
                await self._check()
            return None
        seq = msg.metadata.sequence.stream
        if seq <= self.last_seq:
            return None  # delivered again by a consumer made anew: read already
        self.last_seq, self._heard = seq, time.monotonic()
        return msg

    async def _check(self) -> None:
        self._heard = time.monotonic()
        try:
            last = (await self.js.stream_info(self.stream)).state.last_seq
        except Exception as exc:  # noqa: BLE001 - the servers away or electing: ask again later
            log.debug("stream: %s: no stream info (%s)", self.what, exc)
            return
        if last <= self.last_seq:
            return  # quiet, not stalled
        log.warning(
            "stream: reading %s stalled at position %d of %d: subscribing again from the next one",
            self.what, self.last_seq, last,
        )  # fmt: skip
        old = self._sub
        try:
            await self.subscribe()
        except Exception as exc:  # noqa: BLE001 - still electing: the old one stays, try again later
            log.debug("stream: %s: not subscribed again yet (%s)", self.what, exc)
            return
        self.restarts += 1
        try:
            await old.unsubscribe()
        except Exception:  # noqa: BLE001 - its server is gone
            pass

    async def close(self) -> None:
        try:
            await self._sub.unsubscribe()
        except Exception:  # noqa: BLE001 - the servers gone meanwhile
            pass
