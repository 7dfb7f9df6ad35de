"""Progress that suits where the output goes: a live tqdm bar on a terminal; elsewhere (nohup,
systemd, CI, a pipe) a log line at most every :data:`NON_TTY_INTERVAL_S` seconds instead of a
carriage-return fragment per update.

    for batch in (bar := progress(loader, desc="stage 2 epoch 3/60", total=len(loader))):
        ...
        bar.set_postfix(loss="0.123")
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import Any, Optional

from tqdm import tqdm

log = logging.getLogger(__name__)

NON_TTY_INTERVAL_S = 10.0


class LogProgress:
    """The non-terminal stand-in for tqdm: ``desc: n/total (pct) postfix`` logged at most every
    ``interval`` seconds, and a last line at the end when it ran long enough to log at all."""

    def __init__(self, iterable: Iterable, desc: str, total: Optional[int], interval: float) -> None:
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else (len(iterable) if isinstance(iterable, Sized) else None)
        self.interval = interval
        self.postfix = ""

    def set_postfix(self, **values: Any) -> None:
        self.postfix = " ".join(f"{k} {v}" for k, v in values.items())

    def __iter__(self) -> Iterator:
        start = last = time.monotonic()
        n, logged_at = 0, 0
        for item in self.iterable:
            yield item
            n += 1
            now = time.monotonic()
            if now - last >= self.interval:
                last, logged_at = now, n
                self._log(n, now - start)
        if 0 < logged_at < n:  # the end of a loop long enough to have logged, unless just logged
            self._log(n, time.monotonic() - start)

    def _log(self, n: int, elapsed: float) -> None:
        done = f"{n}/{self.total} ({100 * n / self.total:.0f}%)" if self.total else f"{n}"
        log.info("%s: %s in %.0f s%s", self.desc, done, elapsed, f" {self.postfix}" if self.postfix else "")


def progress(
    iterable: Iterable,
    desc: str,
    total: Optional[int] = None,
    enabled: bool = True,
    interval: float = NON_TTY_INTERVAL_S,
    **tqdm_kwargs: Any,
) -> tqdm | LogProgress:
    """A tqdm bar on a terminal, :class:`LogProgress` elsewhere; a silent tqdm when not ``enabled``."""
    if enabled and not sys.stderr.isatty():
        return LogProgress(iterable, desc, total, interval)
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True, **tqdm_kwargs)
