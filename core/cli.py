"""Helpers shared by the command-line entry points."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

log = logging.getLogger(__name__)


def setup_console_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a user-facing error (no traceback) and exit."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def stop_on_signals() -> threading.Event:
    """An event SIGINT and SIGTERM set, so a long-running service ends its loop cleanly
    (signal handlers can only be installed from the main thread; elsewhere nothing sets it)."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    return stop


@contextmanager
def one_line_errors(*errors: type[BaseException]) -> Iterator[None]:
    """Inside, the listed exceptions (the user's mistakes: a missing file, a bad config, a port
    in use) end the program with one ``error: <message>`` line and exit code 2; the traceback
    goes to the debug log."""
    try:
        yield
    except errors as exc:
        log.debug("%s", type(exc).__name__, exc_info=True)
        fail(str(exc))
