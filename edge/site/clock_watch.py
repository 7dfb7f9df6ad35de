"""A live node whose clock runs ahead of its hub's: said once per session, shown in the hub's stats.

A hub's clock is the newest scene time its nodes sent (``edge.hub``, a region hub alike): what
the engine expires tracklets by and times transitions with. A live node's scene time is its wall
clock, so one whose clock is wrong by an hour moves the site's clock an hour on, and every other
node's live tracklets look an hour old. The hub cannot tell which clock is right, and must not
decide by its own (a region's hubs decide from the stream alone), so it does not correct it: it
says so, comparing each message's scene time with when it reached the hub (``edge.hub``) or the
servers (their timestamp in the stream). A node behind is not said (a buffered message is late by
nature), nor one on files in lockstep: its scene clock runs as fast as it computes.
"""

from __future__ import annotations

import logging
from typing import Optional

log = logging.getLogger("edge.site")

AHEAD_S = 60.0  # more than any link's delay: a clock this far ahead is set wrong


class ClockWatch:
    """``check(node, session, scene_time, arrived)`` for each summaries message of a live node;
    ``ahead`` holds, per node, the most its clock ran ahead past :data:`AHEAD_S` (seconds)."""

    def __init__(self, where: str, ahead_s: float = AHEAD_S):
        """``where``: how the log names what the node's clock moves (``the site``, ``region hall``)."""
        self.where, self.ahead_s = where, ahead_s
        self.ahead: dict[str, float] = {}
        self._said: set[tuple[str, str]] = set()

    def check(self, node: str, session: str, scene_time: float, arrived: Optional[float]) -> None:
        if arrived is None:
            return
        ahead = scene_time - arrived
        if ahead <= self.ahead_s:
            return
        self.ahead[node] = round(max(ahead, self.ahead.get(node, 0.0)), 1)
        if (node, session) in self._said:
            return
        self._said.add((node, session))
        log.warning(
            "node %s's clock runs %.0f s ahead of the hub's (session %s): its scene times move %s's clock "
            "for every node, whose live tracklets then look that much older; set its clock (NTP)",
            node, ahead, session, self.where,
        )  # fmt: skip
