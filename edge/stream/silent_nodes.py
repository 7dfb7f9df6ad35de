"""Node sessions that went silent without ``bye``: the active hub says so in the region's stream.

A node that stops for good without saying ``bye`` (its box gone, killed and never started again)
left its tracklets live in the region's engine: nothing ends them, so they stay in every identity
they joined. Whether a node is silent is a matter of wall-clock time, which the region's hubs must
not decide by (a standby replaying the stream later would decide otherwise). So the active hub
alone judges it, by the server's timestamp of each session's last message, and writes its
judgement into the summaries stream as a ``gone`` message (a header, no body); every hub ends the
session's live tracklets when it reads that message, at the same position
(``RegionSteps._gone``, ``edge/stream/region_steps.py``; in lockstep once everything of its node
before it is), whose decision message says so. The
session's later messages are refused: a node that was only cut off reads that decision when its
link is back and carries on in a new session (``edge/stream/site_ids.py``).

In lockstep the same watch covers a listed node never heard at all, which would hold its region
up for good: waited for that long, it is said absent (a ``gone`` message without a session), and
the others go on without it (``edge/stream/lockstep.py``).
"""

from __future__ import annotations

import datetime
from typing import Optional

NODE_TIMEOUT_S = 900.0  # longer than the outages a node rides out with its buffer (a 10-minute cut)


class SilentNodes:
    """Each node session's last message time (server clock), until it ended; :meth:`due` lists
    those silent past ``timeout_s`` (0: never)."""

    def __init__(self, timeout_s: float = NODE_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.last: dict[tuple[str, str], tuple[float, int]] = {}  # (node, session) -> (time, stream position)

    def heard(self, node: str, session: str, at: Optional[datetime.datetime], position: int) -> None:
        if at is not None:
            self.last[(node, session)] = (at.timestamp(), position)

    def seed(self, sessions: list[tuple[str, str]], now: float, position: int) -> None:
        """Sessions a checkpoint knew (when they were last heard is not kept): as if heard ``now``."""
        for key in sessions:
            self.last.setdefault(key, (now, position))

    def awaited(self, node: str, at: float, position: int) -> None:
        """In lockstep: a listed node never heard that the others' held steps wait for, since
        ``at`` (kept from the first time): due like a silent session, under session ``""``."""
        self.last.setdefault((node, ""), (at, position))

    def ended(self, node: str, session: str) -> None:
        self.last.pop((node, session), None)

    def ended_others(self, node: str, session: str) -> None:
        """The node began ``session``: its earlier ones are over."""
        for key in [k for k in self.last if k[0] == node and k[1] != session]:
            del self.last[key]

    def due(self, now: float) -> list[tuple[str, str, int]]:
        """(node, session, position of its last message) of every session silent too long."""
        if self.timeout_s <= 0:
            return []
        return [(n, s, pos) for (n, s), (at, pos) in self.last.items() if now - at > self.timeout_s]
