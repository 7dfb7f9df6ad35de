"""Recordings of the event stream: ``python -m edge.listen --record FILE`` writes one, and
``python -m edge.view --replay FILE`` serves the operator's page from it.

A recording is JSON lines, one received message per line: ``{"t": <receive time, Unix s>,
"parts": [<base64 of each multipart frame>]}``. The frames are kept raw (whatever schema
version, even malformed ones), so a replay shows exactly what a live subscriber saw. A file
name ending in ``.gz`` is gzip-compressed.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal

log = logging.getLogger(__name__)


def _open(path: str | Path, mode: Literal["r", "w"]) -> IO[str]:
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt" if mode == "r" else "wt", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


class RecordingWriter:
    """Append received messages to a recording; flushed per line so a killed recorder loses at most one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._file = _open(self.path, "w")
        except OSError as exc:
            raise OSError(f"cannot write the recording {self.path}: {exc.strerror or exc}") from None

    def write(self, parts: list[bytes], received: float) -> None:
        line = {"t": round(received, 6), "parts": [base64.b64encode(p).decode("ascii") for p in parts]}
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_recording(path: str | Path) -> Iterator[tuple[float, list[bytes]]]:
    """``(receive time, parts)`` per recorded message, in order. A line that is not a recorded
    message (the last line of a recorder that was killed mid-write) is skipped with a warning
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recording not found: {path}")
    with _open(path, "r") as f:
        n = 0
        while True:
            try:
                line = next(f, None)
            # a .gz cut short by a killed recorder, or bytes that are not text
            except (EOFError, OSError, UnicodeDecodeError) as exc:
                log.warning(
                    "%s: ends early after line %d (%s: %s); the messages before it are kept",
                    path,
                    n,
                    type(exc).__name__,
                    exc,
                )
                return
            if line is None:
                return
            n += 1
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                yield float(item["t"]), [base64.b64decode(p) for p in item["parts"]]
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("%s:%d: not a recorded message, skipped (%s: %s)", path, n, type(exc).__name__, exc)
