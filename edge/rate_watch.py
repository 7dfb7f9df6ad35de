"""Saying so when a camera is processed below its rate.

A box that can't keep up drops frames at the capture slots, and identities fragment when a third
of the frames are gone (issue 30: cross-camera IDF1 96 → 55 under a 1-CPU quota). Nothing said
so. :class:`RateWatch` counts the frames each camera actually gets through the pipeline over a
sliding window of wall time and logs one warning when a camera falls below ``tolerance`` of its
rate, then one line when it is back; the ``stats`` events carry the current shortfall.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shortfall:
    """A camera processed at ``fps`` of its ``rate`` frames per second over the last window."""

    camera: str
    fps: float
    rate: float

    @property
    def share(self) -> float:
        return self.fps / self.rate if self.rate > 0 else 1.0

    def as_dict(self) -> dict[str, float]:
        return {"fps": round(self.fps, 2), "rate": round(self.rate, 2), "share": round(self.share, 3)}


class RateWatch:
    """Per-camera processed rate against the configured one (see the module docstring).

    ``window_s`` must be long enough to hold a few frames at the lowest rate and short enough that
    a warning comes within seconds: 5 s warns within ~6 s of a slowdown. A camera is judged only
    once it has been running for a whole window (model warm-up and the first frames are not a
    shortfall) and while frames still arrive (a camera that is down is the watchdog's to report).
    """

    def __init__(self, rates: dict[str, float], window_s: float = 5.0, tolerance: float = 0.8,
                 check_every_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.rates = {cam: float(r) for cam, r in rates.items() if r and r > 0}
        self.window_s, self.tolerance, self.check_every_s = window_s, tolerance, check_every_s
        self.clock = clock
        self._times: dict[str, deque[float]] = {cam: deque() for cam in self.rates}
        self._first: dict[str, float] = {}
        self._last_check = -float("inf")
        self.below: dict[str, Shortfall] = {}  # cameras under their rate now
        self.warnings = 0  # warning lines logged (tests, the run report)

    def frame(self, camera: str, now: Optional[float] = None) -> None:
        """One frame of ``camera`` went through the pipeline."""
        times = self._times.get(camera)
        if times is None:
            return
        now = self.clock() if now is None else now
        self._first.setdefault(camera, now)
        times.append(now)

    def check(self, now: Optional[float] = None) -> list[str]:
        """Update :attr:`below` and return (and log) the lines due: a camera that fell under its
        rate, or came back. At most once per ``check_every_s``."""
        now = self.clock() if now is None else now
        if now - self._last_check < self.check_every_s:
            return []
        self._last_check = now
        lines = []
        for cam, rate in self.rates.items():
            fps = self._fps(cam, now)
            if fps is None:
                continue
            short = Shortfall(cam, fps, rate)
            if short.share < self.tolerance and cam not in self.below:
                lines.append(f"{cam} is processed at {fps:.1f} fps of its {rate:g} fps ({short.share:.0%}): the box can't keep up "
                             f"and frames are skipped, identities may fragment (see docs/edge.md, 'When the box can't keep up')")
                log.warning("%s", lines[-1])
                self.warnings += 1
            elif short.share >= self.tolerance and cam in self.below:
                lines.append(f"{cam} is back at {fps:.1f} fps of its {rate:g} fps")
                log.info("%s", lines[-1])
            if short.share < self.tolerance:
                self.below[cam] = short
            else:
                self.below.pop(cam, None)
        return lines

    def _fps(self, cam: str, now: float) -> Optional[float]:
        """Frames per second over the last window, or None while it can't be judged."""
        times = self._times[cam]
        while times and times[0] <= now - self.window_s:
            times.popleft()
        first = self._first.get(cam)
        if first is None or now - first < self.window_s or not times or now - times[-1] > self.window_s / 2:
            return None
        return len(times) / self.window_s

    def shares(self, now: Optional[float] = None) -> dict[str, float]:
        """Processed/configured rate of every camera that can be judged now (the governor's input)."""
        now = self.clock() if now is None else now
        out = {}
        for cam, rate in self.rates.items():
            fps = self._fps(cam, now)
            if fps is not None:
                out[cam] = fps / rate
        return out

    def report(self) -> dict[str, dict[str, float]]:
        """The cameras under their rate now, for ``stats`` events."""
        return {cam: s.as_dict() for cam, s in self.below.items()}
