"""A tracklet log: everything the identity engine was given during a run, to learn from and replay.

``outputs.tracklet_log: run.jsonl.gz`` makes ``python -m edge.run`` write, at every step, the
tracklet summaries it hands the engine and the scene time, in the site protocol's ``summaries``
messages (what a node sends its hub: each appearance only when it changed, floor samples once;
``edge/wire/summary_stream.py``), in the recording format of ``edge.listen --record``
(``edge/wire/recording.py``: JSON lines, ``.gz`` compressed). The first message is a ``hello``
naming the cameras and the embedding size.

Two readers: :func:`replay_steps` gives back the engine's input step by step (feeding it to a fresh
engine with the run's settings makes the run's decisions again: the engine is deterministic), and
:func:`final_summaries` gives each tracklet as it ended and :func:`image_tracks` where it stood
over time (what ``python -m edge.topology learn`` learns the site from).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from edge.identity.geometry import foot_point
from edge.identity.records import Key, TrackletSummary
from edge.site.mirror import Mirror
from edge.wire.recording import RecordingWriter, read_recording
from edge.wire.site_protocol import ProtocolError, decode, decode_tracklets, encode, encode_tracklets
from edge.wire.summary_stream import SummaryStream

LOG_SESSION = ("log", "log")  # the mirror's (node, session) for a log: one node, one session


class TrackletLogWriter:
    """Appends each step's summaries to a log (flushed per step: a killed run keeps what it did)."""

    def __init__(self, path: str | Path, cameras: list[str], embedding_dim: int):
        self._recording = RecordingWriter(path)
        self._stream = SummaryStream()
        self._seq = 0
        hello = {"node": "log", "session": "log", "cameras": list(cameras), "embedding_dim": int(embedding_dim)}
        self._recording.write(encode("hello", hello), 0.0)

    def write(self, now: float, summaries: Iterable[TrackletSummary]) -> None:
        summaries = list(summaries)
        items = [self._stream.wire(s) for s in summaries]  # a step with none is kept: the engine revises on it
        self._seq += 1
        self._recording.write(encode_tracklets(self._seq, now, items), now)
        for s in summaries:
            if s.ended:  # the next summary of this key would be a new tracklet's
                self._stream.sent.pop(s.key, None)

    def close(self) -> None:
        self._recording.close()


def replay_steps(path: str | Path) -> Iterator[tuple[float, list[TrackletSummary]]]:
    """``(scene time, summaries)`` of every logged step, rebuilt as the engine was given them."""
    mirror = Mirror()
    dim = None
    for _, parts in read_recording(path):
        try:
            if dim is None:
                hello = decode(parts, ("hello",))
                dim = int(hello.header["embedding_dim"])
                mirror.new_session(list(hello.header["cameras"]))
                continue
            now, items = decode_tracklets(decode(parts, ("summaries",)), dim)
        except (ProtocolError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a tracklet log ({exc})") from None
        step = []
        for w in items:
            t, _ = mirror.absorb(*LOG_SESSION, w, False)
            step.append(t.summary())
            if w.ended:
                mirror.forget(t)
        yield now, step
    if dim is None:
        raise ValueError(f"{path}: empty tracklet log")


def final_summaries(path: str | Path) -> list[TrackletSummary]:
    """Every tracklet of the log as last seen (ended or still live when the run stopped), by start time."""
    last: dict[Key, TrackletSummary] = {}
    for _, step in replay_steps(path):
        for s in step:
            last[s.key] = s
    return sorted(last.values(), key=lambda s: (s.first_seen, s.key))


def image_tracks(path: str | Path) -> dict[Key, np.ndarray]:
    """Where each tracklet stood in its image over time: ``[N, 4]`` rows of (time, foot x, foot y,
    box height) in pixels, one per step it was seen in (from each step's last box)."""
    rows: dict[Key, list[tuple[float, float, float, float]]] = {}
    for _, step in replay_steps(path):
        for s in step:
            track = rows.setdefault(s.key, [])
            if track and track[-1][0] >= s.last_seen:
                continue
            x, y = foot_point(s.last_box)
            track.append((s.last_seen, float(x), float(y), float(s.last_box[3] - s.last_box[1])))
    return {k: np.array(v, np.float64) for k, v in rows.items()}
