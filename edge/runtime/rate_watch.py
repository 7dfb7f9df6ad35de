"""Saying so when a camera is processed below the rate it delivers.

A box that can't keep up drops frames at the capture slots, and identities fragment when a third
of the frames are gone (issue 30: cross-camera IDF1 96 → 55 under a 1-CPU quota). Nothing said
so. :class:`RateWatch` counts, over a sliding window of wall time, the frames each camera
delivers (its capture thread's reads) and the frames the pipeline gets through, logs one warning
when a camera's processed share falls below ``tolerance``, then one line when it is back; the
``stats`` events carry the current shortfall.

The share is against what the camera *delivers*, not its nominal rate: a stream announced at
30 fps that sends 25 is not a box falling behind. Until delivery has been measured over a window
(or when nobody reports it), the configured rate stands in.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shortfall:
    """A camera processed at ``fps`` of the ``rate`` frames per second it delivers."""

    camera: str
    fps: float
    rate: float

    @property
    def share(self) -> float:
        return min(1.0, self.fps / self.rate) if self.rate > 0 else 1.0

    def as_dict(self) -> dict[str, float]:
        return {"fps": round(self.fps, 2), "rate": round(self.rate, 2), "share": round(self.share, 3)}


class RateWatch:
    """Per-camera processed rate against the delivered one (see the module docstring).

    ``window_s`` must be long enough to hold a few frames at the lowest rate and short enough that
    a warning comes within seconds: 5 s warns within ~6 s of a slowdown. A camera is judged only
    once it has been running for a whole window (model warm-up and the first frames are not a
    shortfall) and while frames still arrive (a camera that is down is the watchdog's to report).
    """

    def __init__(
        self,
        rates: dict[str, float],
        window_s: float = 5.0,
        tolerance: float = 0.8,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.rates = {cam: float(r) for cam, r in rates.items() if r and r > 0}
        self.window_s, self.tolerance, self.check_every_s = window_s, tolerance, check_every_s
        self.clock = clock
        self._times: dict[str, deque[float]] = {cam: deque() for cam in self.rates}
        self._reads: dict[str, deque[tuple[float, int]]] = {
            cam: deque() for cam in self.rates
        }  # (time, frames delivered so far)
        self._first: dict[str, float] = {}
        self._last_check = -float("inf")
        self.below: dict[str, Shortfall] = {}  # cameras under their rate now
        self.warnings = 0  # warning lines logged (the run report)

    def frame(self, camera: str, now: Optional[float] = None) -> None:
        """One frame of ``camera`` went through the pipeline."""
        times = self._times.get(camera)
        if times is None:
            return
        now = self.clock() if now is None else now
        self._first.setdefault(camera, now)
        times.append(now)

    def delivered(self, camera: str, total: int, now: Optional[float] = None) -> None:
        """``camera``'s capture has delivered ``total`` frames so far (sampled by the run loop)."""
        reads = self._reads.get(camera)
        if reads is None:
            return
        now = self.clock() if now is None else now
        if reads and total < reads[-1][1]:  # a restarted capture counts from zero again
            reads.clear()
        reads.append((now, total))

    def check(self, now: Optional[float] = None) -> list[str]:
        """Update :attr:`below` and return (and log) the lines due: a camera that fell under its
        rate, or came back. At most once per ``check_every_s``."""
        now = self.clock() if now is None else now
        if now - self._last_check < self.check_every_s:
            return []
        self._last_check = now
        lines = []
        for cam in self.rates:
            short = self._shortfall(cam, now)
            if short is None:
                continue
            if short.share < self.tolerance and cam not in self.below:
                lines.append(
                    f"{cam} is processed at {short.fps:.1f} of the {short.rate:.1f} fps it delivers "
                    f"({short.share:.0%}): the box can't keep up and frames are skipped, identities may fragment "
                    "(docs/edge.md, 'When the box can't keep up')"
                )
                log.warning("%s", lines[-1])
                self.warnings += 1
            elif short.share >= self.tolerance and cam in self.below:
                lines.append(f"{cam} is back at {short.fps:.1f} of the {short.rate:.1f} fps it delivers")
                log.info("%s", lines[-1])
            if short.share < self.tolerance:
                self.below[cam] = short
            else:
                self.below.pop(cam, None)
        return lines

    def shares(self, now: Optional[float] = None) -> dict[str, float]:
        """Processed/delivered rate of every camera that can be judged now (the governor's input)."""
        now = self.clock() if now is None else now
        out = {}
        for cam in self.rates:
            short = self._shortfall(cam, now)
            if short is not None:
                out[cam] = short.share
        return out

    def _shortfall(self, cam: str, now: float) -> Optional[Shortfall]:
        """Processed and delivered frames per second over the last window, or None while it can't be judged."""
        times = self._times[cam]
        while times and times[0] <= now - self.window_s:
            times.popleft()
        first = self._first.get(cam)
        if first is None or now - first < self.window_s or not times or now - times[-1] > self.window_s / 2:
            return None
        return Shortfall(cam, len(times) / self.window_s, self._delivered_fps(cam, now))

    def _delivered_fps(self, cam: str, now: float) -> float:
        reads = self._reads[cam]
        while len(reads) > 1 and reads[1][0] <= now - self.window_s:  # keep one sample at or before the window's start
            reads.popleft()
        if len(reads) > 1 and reads[-1][0] - reads[0][0] >= 0.8 * self.window_s:
            return (reads[-1][1] - reads[0][1]) / (reads[-1][0] - reads[0][0])
        return self.rates[cam]

    def report(self) -> dict[str, dict[str, float]]:
        """The cameras under their rate now, for ``stats`` events."""
        return {cam: s.as_dict() for cam, s in self.below.items()}
