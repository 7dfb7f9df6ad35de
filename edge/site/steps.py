"""When the hub's engine steps, and over what: free running or in lockstep.

Free running (a live site), every step takes everything the nodes sent since the last one. In
lockstep (``lockstep:`` in the hub's YAML: a site of file or synthetic cameras), the hub waits for
one step of every listed node (or its bye) and runs them as one engine step at the latest of
their scene times, so the site decides exactly as one process over all the cameras would. A
listed node that never connects would hold the others up for good: waited for ``absent_after_s``
it is said absent, and the others go on without it until it connects.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Optional

import numpy as np

from edge.site.sessions import NodeState
from edge.wire.site_protocol import WireTracklet

Batch = list[tuple[NodeState, WireTracklet, bool]]  # (node, summary, full: from a resync)


def take_steps(
    nodes: dict[str, NodeState], lockstep: list[str], dirty: bool, absent: Collection[str] = ()
) -> list[tuple[float, Batch]]:
    """Batches ready for the engine: everything received (free running; a step even without
    summaries when ``dirty`` tracklets wait), or one step of each lockstep node once all of them
    have sent it (or said bye); a listed node never connected and said ``absent`` is not waited for."""
    steps: list[tuple[float, Batch]] = []
    if not lockstep:
        items: Batch = []
        now = -np.inf
        for n in nodes.values():
            while n.pending:
                t, batch, full = n.pending.popleft()
                now = max(now, t)
                items += [(n, w, full) for w in batch]
        if items or dirty:
            steps.append((now, items))
        return steps
    while True:
        found = [nodes.get(name) for name in _awaited(nodes, lockstep, absent)]
        members = [m for m in found if m is not None]
        if len(members) < len(found) or any(not m.pending and not m.finished for m in members):
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


def waiting_for(nodes: dict[str, NodeState], lockstep: list[str], absent: Collection[str] = ()) -> list[str]:
    """In lockstep, while some listed node has a step waiting: the listed nodes it waits for (not
    connected yet and not said ``absent``, or with nothing pending and no bye). Free running, or
    nothing waiting: none."""
    members = [nodes.get(name) for name in lockstep]
    if not any(m is not None and m.pending for m in members):
        return []
    awaited = _awaited(nodes, lockstep, absent)
    idle = [m is None or not (m.pending or m.finished) for m in members]
    return [name for name, quiet in zip(lockstep, idle) if quiet and name in awaited]


def all_done(nodes: dict[str, NodeState], lockstep: list[str], absent: Collection[str] = ()) -> bool:
    """Every node (every lockstep node but those said absent) said bye and has nothing left for the engine."""
    names = _awaited(nodes, lockstep, absent) or list(nodes)

    def done(n: Optional[NodeState]) -> bool:
        return n is not None and n.finished and not n.pending

    return bool(names) and all(done(nodes.get(name)) for name in names)


def _awaited(nodes: dict[str, NodeState], lockstep: list[str], absent: Collection[str]) -> list[str]:
    """The listed nodes a lockstep site waits for: connected, or not said absent."""
    return [name for name in lockstep if name in nodes or name not in absent]


class WaitingSaid:
    """The listed nodes a lockstep hub last said its held steps wait for: each change said once
    in its log (a warning naming them, then a line when it no longer waits), not at every stats
    line. ``edge.hub`` and a stream region hub say it alike."""

    def __init__(self, log: logging.Logger, who: str, why: str):
        self.log, self.who, self.why = log, who, why
        self.said: list[str] = []

    def say(self, waiting: list[str], held: int) -> None:
        if waiting and waiting != self.said:
            self.log.warning(
                "%s waits for node %s (lockstep): %d messages of the others held (%s)",
                self.who, ", ".join(waiting), held, self.why,
            )  # fmt: skip
        elif not waiting and self.said:
            self.log.info("%s no longer waits (lockstep)", self.who)
        self.said = waiting
