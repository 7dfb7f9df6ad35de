"""Lockstep: a region of several file-camera nodes decided step by step together, not in stream order.

Free running, a region's hubs decide each node message as it comes in the stream. That order is
the same for every hub (so they agree), but it is the order the messages reached the server: a
node whose link was cut for a minute has its steps decided after the other nodes' later ones, so
a site of file cameras is not decided as one process over all its cameras would decide it, and a
fault changes the decisions. With ``lockstep:`` in the hub YAML (node names, as for ``edge.hub``),
each listed node's messages wait in a queue of their own (:class:`Lockstep`), and the hub decides
one step of every listed node together (one engine step over all their summaries, at the latest
of their scene times) once each has one or has ended (``bye``, said gone): the ZeroMQ hub's
lockstep (``edge/site/steps.py``) on a stream. Steps are paired by their order in each node's
queue, not by comparing scene times: nodes on files in lockstep (``realtime: false``) step at one
frame rate from one scene clock (``stream.epoch``), so the n-th steps are at one scene time (a
file node started again in a new session, not carried on, begins at its first frame again).
Whatever the stream's order, the hubs then make the decisions of the fault-free run
(``tests/test_stream_lockstep.py``). What is no step takes no step's turn: a duplicate (past the
server's duplicate window), a message of a refused or gone session, and each but the last message
of a step sent in several (a new session's re-send, split below the servers' ``max_payload``:
they say ``more``). Messages a node's buffer dropped (past ``stream.max_buffered``, or one past the
servers' ``max_payload``) would shift its pairing for the rest of its session.

A listed node's other messages (``hello``, ``bye``, the active hub's ``gone``) are read as soon as
everything before them of that node was: a ``bye`` ends its node, and the others go on without
it. A listed node never heard holds the region up until the active hub says it absent: never heard
while the others' steps were held for ``--node-timeout-s`` (a ``gone`` message without a session,
in its node's queue like any other); the others then go on without it until its ``hello`` is read,
from which on they wait for it again. One heard only in refused sessions (another model) is not
waited for; one cut off holds the region up until its link is back or the active hub says its
session gone (``--node-timeout-s``). Each combined step is its own decision message:
a stream message that lets the hub decide several (the step, ``bye`` or ``gone`` of the node the
others waited for) gives several, parts of its position. The queues are part of a hub's state: a
checkpoint keeps them (``edge/stream/checkpoint.py``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from edge.wire.site_protocol import MAGIC


@dataclass(frozen=True)
class Held:
    """A listed node's message of the region's stream, held until its turn."""

    position: int
    parts: list[bytes]
    session: str
    gone: bool = False  # the active hub saying the session went silent, or (no session) the node absent

    @property
    def step(self) -> bool:
        """A ``summaries`` message: one step of its node (the rest is read once it reaches the head)."""
        return not self.gone and len(self.parts) >= 3 and self.parts[0] == MAGIC and self.parts[1] == b"summaries"


class Lockstep:
    """The listed nodes' queues and when a step of all of them may be decided."""

    def __init__(self, nodes: Sequence[str]):
        self.nodes = tuple(dict.fromkeys(nodes))  # a name given twice is one node
        self.queues: dict[str, deque[Held]] = {n: deque() for n in self.nodes}
        self.refused: set[str] = set()  # nodes heard only in sessions refused: not waited for
        self.absent: set[str] = set()  # nodes said absent, never heard: not waited for until their hello

    def __setstate__(self, state: dict) -> None:
        """A checkpoint written before nodes could be said absent loads with none said."""
        self.__dict__.update(state)
        self.__dict__.setdefault("absent", set())

    def lists(self, node: str) -> bool:
        return node in self.queues

    def excused(self, node: str) -> bool:
        """A listed node not waited for until a session of it is read: heard only in refused
        sessions, or said absent."""
        return node in self.refused or node in self.absent

    def hold(self, node: str, held: Held) -> None:
        self.queues[node].append(held)

    @property
    def held(self) -> int:
        """Messages waiting, all nodes together (the hub's stats)."""
        return sum(len(q) for q in self.queues.values())

    def waiting_for(self, live: Callable[[str], bool]) -> list[str]:
        """The listed nodes the others wait for: live (or never heard) with nothing held."""
        return [n for n in self.nodes if not self.queues[n] and live(n)]

    def turns(
        self, live: Callable[[str], bool], would_step: Callable[[str, Held], bool]
    ) -> Iterator[tuple[str, Held] | list[tuple[str, Held]]]:
        """What may be decided now, in order: a node's message that makes no step (``would_step``
        false: a hello, a bye, a gone, a duplicate, one of a refused session, a step's message that
        says ``more``), alone, as soon as
        everything of its node before it was read; or one step of every node that has one,
        together, once every listed node ``live`` (its latest session not ended; a node never
        heard is) has one. Each is taken off its queue as it is given: the caller reads it before
        asking again (what it reads decides what comes next)."""
        while True:
            for node in self.nodes:
                queue = self.queues[node]
                while queue and not (queue[0].step and would_step(node, queue[0])):
                    yield node, queue.popleft()
            if self.waiting_for(live):
                return
            ready = [n for n in self.nodes if self.queues[n]]
            if not ready:
                return
            yield [(n, self.queues[n].popleft()) for n in ready]
