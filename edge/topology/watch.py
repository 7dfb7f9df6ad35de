"""The topology learned while the engine runs (``matching.learn_topology``), and said when it changes.

``python -m edge.topology learn`` learns a site from a recording; a box that runs for weeks can
learn the same from the tracklets it has seen end. Every ``every_s`` scene seconds the latest
``keep`` ended tracklets go through the same steps (confident sightings, ``evidence.py``; links,
windows, doors and overlaps, ``links.py``). A topology that differs from the one in use in what a
user would notice (a link or an overlap found or gone, a window bound moved by more than a quarter
and more than :data:`WINDOW_SLACK_S`) is said in a log line per change, written as a camera file (``out``) and,
with ``use`` and no transitions in the camera file, handed to the engine, which decides with it
from then on; smaller wobbles of a re-learned window are not (decisions do not flicker with
each learning). A shared ground plane needs where each tracklet stood over time, which only the
recording keeps: it is learned offline only.

Learning runs on a worker thread in a live run (clustering a day of tracklets takes seconds, the
frames do not wait); in a lockstep run it runs in the step, so the run decides the same each time.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

from edge.identity.records import TrackletSummary
from edge.identity.settings import EngineSettings
from edge.topology.evidence import sightings
from edge.topology.links import Link, Topology, learn_topology
from edge.topology.site_file import write_site_file

log = logging.getLogger("edge.topology")

WINDOW_SLACK_S = 2.0  # a window bound that moves less (and less than a quarter) is the same window


def learn_from(tracklets: list[TrackletSummary], settings: EngineSettings, min_evidence: int) -> Topology:
    """The topology of these ended tracklets (no ground plane: see the module docstring)."""
    return learn_topology(sightings(tracklets, settings), min_evidence)


def changes(old: Optional[Topology], new: Topology) -> list[str]:
    """What a user would notice between two topologies, one line each (empty: the same)."""
    before = {(k.src, k.dst): k for k in old.links} if old is not None else {}
    after = {(k.src, k.dst): k for k in new.links}
    out = []
    for pair, k in after.items():
        was = before.get(pair)
        if was is None:
            out.append(f"{k.src} -> {k.dst} linked: {k.walks} walks, window {_window(k)}")
        elif _moved(was.min_s, k.min_s) or _moved(was.max_s, k.max_s):
            out.append(f"{k.src} -> {k.dst} window now {_window(k)} (was {_window(was)}), {k.walks} walks")
    for pair, k in before.items():
        if pair not in after:
            walks = new.untrusted.get(pair, 0)
            out.append(f"{k.src} -> {k.dst} no longer trusted: {walks} walks among the latest tracklets")
    overlaps_before = set(old.overlaps) if old is not None else set()
    for a, b in sorted(set(new.overlaps) - overlaps_before):
        out.append(f"{a} ~ {b} overlap: seen at once {new.overlaps[(a, b)]} times")
    for a, b in sorted(overlaps_before - set(new.overlaps)):
        out.append(f"{a} ~ {b} no longer seen to overlap")
    return out


def _window(k: Link) -> str:
    return f"{k.min_s:g}-{k.max_s:g} s"


def _moved(a: float, b: float) -> bool:
    return abs(a - b) > max(WINDOW_SLACK_S, 0.25 * max(abs(a), abs(b)))


class TopologyWatch:
    """Ended tracklets in, the learned topology out when it changed (see the module docstring)."""

    def __init__(
        self,
        every_s: float = 300.0,
        min_evidence: int = 5,
        keep: int = 5000,
        out: Optional[Path] = None,
        base: Optional[Path] = None,
        background: bool = False,
        apply: bool = False,
    ):
        """``out``: camera file to (re)write on a change, ``_BASE_`` ``base`` (the run's camera
        file); ``background``: learn on a worker thread (a live run); ``apply``: the engine is to
        decide with what is learned (the camera file gives no transitions and ``use`` is on)."""
        self.apply = apply
        self.every_s = every_s
        self.min_evidence = min_evidence
        self.out, self.base = out, base
        self.tracklets: deque[TrackletSummary] = deque(maxlen=keep)
        self.current: Optional[Topology] = None
        self.said: list[str] = []  # every change said, in order
        self.learnings = 0
        self._next_at: Optional[float] = None
        self.background = background
        self._job: Optional[threading.Thread] = None
        self._result: list[Any] = []  # the worker's topology, or the exception it raised

    def add(self, ended: Iterable[TrackletSummary]) -> None:
        """Tracklets that ended (their final summaries)."""
        self.tracklets.extend(s for s in ended if s.appearance is not None)

    def step(self, now: float, settings: EngineSettings) -> Optional[Topology]:
        """The newly learned topology when it changed since the last one in use, else None;
        ``settings``: the engine's (its threshold judges what is confident)."""
        if self._job is not None:
            if self._job.is_alive():
                return None
            self._job = None
            return self._take(self._result.pop(), now)
        if self._next_at is None:
            self._next_at = now + self.every_s
        if now < self._next_at:
            return None
        self._next_at = now + self.every_s
        tracklets = list(self.tracklets)
        if self.background:  # a daemon: a run that ends mid-learning does not wait for it
            self._job = threading.Thread(target=self._learn, args=(tracklets, settings), daemon=True, name="topology")
            self._job.start()
            return None
        self._learn(tracklets, settings)
        return self._take(self._result.pop(), now)

    def _learn(self, tracklets: list[TrackletSummary], settings: EngineSettings) -> None:
        try:
            self._result.append(learn_from(tracklets, settings, self.min_evidence))
        except Exception as exc:  # noqa: BLE001 - a learning that fails must not stop the run
            self._result.append(exc)

    def _take(self, topology: Topology | Exception, now: float) -> Optional[Topology]:
        if isinstance(topology, Exception):
            log.error("topology at %.0f s: learning failed (%s): the topology in use stays", now, topology)
            return None
        self.learnings += 1
        said = changes(self.current, topology)
        if not said:
            if self.current is None:
                log.info(
                    "topology at %.0f s: nothing trusted yet (%d sightings in %d tracklets, %d camera pairs with "
                    "too few walks)", now, topology.sightings, len(self.tracklets), len(topology.untrusted),
                )  # fmt: skip
            return None
        for line in said:
            log.info("topology at %.0f s: %s", now, line)
        self.said += said
        self.current = topology
        if self.out is not None:
            try:
                write_site_file(
                    topology, self.out, self.base, f"a running engine's latest {len(self.tracklets)} tracklets"
                )
            except OSError as exc:
                log.error("topology: %s not written (%s)", self.out, exc)
        return topology

    def report(self) -> dict:
        """For the run report: links in use, every change said."""
        links = [] if self.current is None else self.current.links
        windows = [{"from": k.src, "to": k.dst, "min_s": k.min_s, "max_s": k.max_s, "walks": k.walks} for k in links]
        return {"learnings": self.learnings, "links": windows, "changes": self.said}

    def close(self) -> None:
        """Nothing to wait for: a learning still running is a daemon thread."""
