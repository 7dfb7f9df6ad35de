"""A node's outbox: the steps of tracklet summaries waiting for the hub, bounded.

The pipeline thread appends a step per engine update; the node's I/O thread sends them in order.
Past ``buffer`` summaries (the hub away or slow) the oldest steps are coalesced (a later summary
of a tracklet replaces an older one, floor samples add up), so the state survives and only step
granularity is lost; a single step bigger than the buffer keeps its ended tracklets only. A
resync (the hub welcomed the node) replaces everything with the full state, in chunks that stay
within the protocol's array limit. The caller holds the node's lock around every method.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np

from edge.wire.site_protocol import WireTracklet

RESYNC_CHUNK = 2000  # tracklets per resync message: 5 arrays each stays far below protocol.MAX_ARRAYS

Step = tuple[float, list[WireTracklet], bool]  # (scene time, summaries, full: a resync chunk)
Sent = dict[tuple[str, int], tuple[int, float]]  # what the hub has of a tracklet: (n_embeddings, last floor time)


def merge_steps(older: list[WireTracklet], newer: list[WireTracklet]) -> list[WireTracklet]:
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


class Outbox:
    """Steps in sending order, and how many summaries they hold."""

    def __init__(self) -> None:
        self.steps: deque[Step] = deque()
        self.queued = 0

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def add(self, now: float, items: list[WireTracklet]) -> None:
        self.steps.append((now, items, False))
        self.queued += len(items)

    def first(self) -> Step:
        return self.steps[0]

    def sent_first(self, items: list[WireTracklet]) -> None:
        """The first step went out (``items``: its summaries as they were taken)."""
        self.steps.popleft()
        self.queued -= len(items)

    def bound(self, buffer: int, sent: Sent, stats: dict[str, int]) -> None:
        """At most ``buffer`` summaries: coalesce the oldest steps, then drop live summaries of a
        step bigger than the buffer (``sent`` forgets them: their next summary carries everything
        again)."""
        while self.queued > buffer and len(self.steps) > 1:
            t0, a, f0 = self.steps.popleft()
            t1, b, f1 = self.steps.popleft()
            merged = merge_steps(a, b)
            self.queued += len(merged) - len(a) - len(b)
            self.steps.appendleft((max(t0, t1), merged, f0 or f1))
            stats["coalesced"] += 1
        if self.queued > buffer and self.steps:  # one step bigger than the buffer: drop live, keep ended
            now, items, full = self.steps.popleft()
            keep = [w for w in items if w.ended][:buffer]
            kept = {id(w) for w in keep}
            for w in items:
                if id(w) not in kept:  # never sent: the next summary of it must carry everything again
                    sent.pop((w.camera, w.local_id), None)
            stats["dropped"] += len(items) - len(keep)
            self.queued += len(keep) - len(items)
            self.steps.appendleft((now, keep, full))

    def refill(self, now: float, items: list[WireTracklet]) -> None:
        """Everything queued is replaced by ``items``, the full state (at least one, maybe empty, step)."""
        self.steps.clear()
        for start in range(0, max(len(items), 1), RESYNC_CHUNK):  # one message stays within the protocol's limit
            self.steps.append((now, items[start : start + RESYNC_CHUNK], True))
        self.queued = len(items)
