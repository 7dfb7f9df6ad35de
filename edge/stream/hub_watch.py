"""A node's view of its region's hubs: is one of them active (holding the region's lease)?

A node that streams keeps deciding its own identities whatever the hubs do, and what it sends
waits in the stream while no hub reads it; but the site's identities stop meanwhile, so the node
says so: a warning when its region has had no active hub for two leases (the lease bucket's time
to live, :data:`GRACE_S` until it is read), a line when one is
back, and ``hub_away_s`` / ``hub_outages`` in its stats (the run report's ``stream``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Optional

from nats.js.errors import NotFoundError

from edge.stream.names import LEASE_BUCKET, LEASE_S, Region, lease_holder

log = logging.getLogger("edge.stream")

GRACE_S = 2 * LEASE_S  # a standby takes over within a lease: longer without one is an outage
UNREADABLE_TIMES = 3  # the lease unreadable (a cluster electing a new leader after losing a server): 3x the grace
CHECK_EVERY_S = 0.5
READ_TIMEOUT_S = 1.0  # a lookup the servers do not answer counts as no hub seen (and never holds a close up)


class HubWatch:
    """Reads the region's lease key every :data:`CHECK_EVERY_S` (see the module docstring)."""

    def __init__(self, region: Region, node: str, on_change: Optional[Callable[[bool, float], None]] = None):
        """``on_change(away, since)``: called (on the watch's loop) when the region's hub is found away
        (after the grace; ``since``: monotonic, when none was seen first) and when one holds the
        lease again or for the first time."""
        self.region, self.node = region, node
        self.on_change = on_change
        self.seen_one = False
        self.grace_s = GRACE_S  # two of the lease bucket's time to live, once read
        self.away_since: Optional[float] = None  # no holder seen since (monotonic)
        self.said = False  # the outage was announced
        self.outages = 0

    async def run(self, get_js: Callable[[], Any], stopping: Callable[[], bool]) -> None:
        """Until ``stopping()``; ``get_js()``: the JetStream context, None while no server answers
        (no hub seen: a node whose servers are down from its start is told so too)."""
        self.away_since = time.monotonic()  # none seen yet: counts from the start
        kv: Any = None
        while not stopping():
            holder = None
            js = get_js()
            try:
                if js is None:
                    raise ConnectionError("no server yet")
                if kv is None:
                    kv = await asyncio.wait_for(js.key_value(LEASE_BUCKET), READ_TIMEOUT_S)
                    ttl = (await asyncio.wait_for(kv.status(), READ_TIMEOUT_S)).ttl
                    self.grace_s = 2 * float(ttl) if ttl else GRACE_S  # the hubs' own lease
                entry = await asyncio.wait_for(kv.get(self.region.name), READ_TIMEOUT_S)
                holder = lease_holder(entry.value)[0]
                readable = True
            except NotFoundError:  # read: nobody holds it (no key, a key deleted, no bucket yet)
                readable = True
            except Exception:  # noqa: BLE001 - the servers away or electing a leader: not known
                readable = False
            try:
                self.seen(holder, time.monotonic(), readable)
            except Exception:  # noqa: BLE001 - what is told of it failed: the watch itself goes on
                log.exception("stream: node %s could not take region %s's hub being away or back", self.node,
                              self.region.name)  # fmt: skip
            await asyncio.sleep(CHECK_EVERY_S)

    def seen(self, holder: Optional[str], now: float, readable: bool = True) -> None:
        """``holder``: the lease's (None: none seen); ``readable``: whether the lease could be read
        (a servers' fail-over of a few seconds is not taken for a hub outage as soon)."""
        if holder:
            if (self.said or not self.seen_one) and self.on_change is not None:
                self.on_change(False, now)
            self.seen_one = True
            if self.said:
                log.info(
                    "stream: region %s has an active hub again (%s) after %.1f s", self.region.name, holder,
                    now - (self.away_since or now),
                )  # fmt: skip
            self.away_since, self.said = None, False
            return
        if self.away_since is None:
            self.away_since = now
        grace = self.grace_s if readable else UNREADABLE_TIMES * self.grace_s
        if not self.said and now - self.away_since >= grace:
            self.said = True
            self.outages += 1
            if self.on_change is not None:
                self.on_change(True, self.away_since)
            log.warning(
                "stream: region %s has no active hub (%.0f s): node %s keeps deciding its own ids and its "
                "summaries wait in the stream", self.region.name, now - self.away_since, self.node,
            )  # fmt: skip

    def stats(self) -> dict[str, Any]:
        away = None if not self.said or self.away_since is None else round(time.monotonic() - self.away_since, 1)
        return {"hub_away_s": away, "hub_outages": self.outages}
