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

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Optional

import numpy as np

from edge.identity.geometry import foot_point
from edge.identity.records import Key, TrackletSummary
from edge.site.mirror import Mirror
from edge.wire.recording import RecordingWriter, read_recording
from edge.wire.site_protocol import ProtocolError, decode, decode_tracklets, encode, encode_tracklets
from edge.wire.summary_stream import SummaryStream

LOG_SESSION = ("log", "log")  # the mirror's (node, session) for a log: one node, one session


class SummaryWriter:
    """Each step's summaries as site-protocol messages (a ``hello`` first) into ``sink(parts, now)``:
    a tracklet log's file, or a region's stream (``edge/stream/publisher.py``)."""

    def __init__(
        self,
        sink: Callable[[list[bytes], float], None],
        cameras: list[str],
        embedding_dim: int,
        node: str = "log",
        session: str = "log",
    ):
        self._sink = sink
        self._stream = SummaryStream()
        self._seq = 0
        self.last_now = 0.0
        self.said_bye = False
        hello = {"node": node, "session": session, "cameras": list(cameras), "embedding_dim": int(embedding_dim)}
        sink(encode("hello", hello), 0.0)

    def write(self, now: float, summaries: Iterable[TrackletSummary], more: bool = False) -> None:
        """One step's summaries; ``more``: the step goes on in the next message (see
        :func:`~edge.wire.site_protocol.encode_tracklets`)."""
        summaries = list(summaries)
        items = [self._stream.wire(s) for s in summaries]  # a step with none is kept: the engine revises on it
        self._seq += 1
        self.last_now = now
        self._sink(encode_tracklets(self._seq, now, items, more), now)
        for s in summaries:
            if s.ended:  # the next summary of this key would be a new tracklet's
                self._stream.sent.pop(s.key, None)

    def bye(self) -> None:
        """The session ends (once): a hub makes its ended tracklets final rather than wait for the
        revision window, which a region's clock may never pass again."""
        if not self.said_bye:
            self.said_bye = True
            self._sink(encode("bye", {"seq": self._seq + 1}), self.last_now)


class TrackletLogWriter(SummaryWriter):
    """Appends each step's summaries to a log (flushed per step: a killed run keeps what it did)."""

    def __init__(self, path: str | Path, cameras: list[str], embedding_dim: int):
        self._recording = RecordingWriter(path)
        super().__init__(self._recording.write, cameras, embedding_dim)

    def close(self) -> None:
        self.bye()
        self._recording.close()


class StepReader:
    """Summaries messages in, the engine's steps out: one mirror over every node session's tracklets
    (a tracklet log's one, or a region stream's many). Each session starts with its ``hello`` (a
    second one is ignored); a node's new session ends its old session's live tracklets (in the next
    step, as the hub does for a node that restarted); a message whose ``seq`` is not above its
    session's last is a duplicate and gives no step. ``embedding_dim``: the size every hello must
    announce (a node running another model is refused, its messages with it)."""

    _said_gone: frozenset[tuple[str, str]] = frozenset()  # (a class default: checkpoints pickled before it load)

    def __init__(self, embedding_dim: Optional[int] = None) -> None:
        self.mirror = Mirror()
        self.embedding_dim = embedding_dim
        self.dims: dict[tuple[str, str], int] = {}
        self.last_seq: dict[tuple[str, str], int] = {}
        self.sessions: dict[str, str] = {}  # node -> its latest session
        self.origin: dict[Key, tuple[str, str, int]] = {}  # engine key -> (node, session, the node's local id)
        self.owners: dict[str, str] = {}  # camera -> the node that sends it
        self.byes: list[tuple[str, str]] = []  # sessions that said bye, not yet taken (take_byes)
        self._gone: set[tuple[str, str]] = set()

    def read(self, parts: list[bytes], node: str, session: str) -> Optional[tuple[float, list[TrackletSummary]]]:
        """``(scene time, summaries)`` of a ``summaries`` message, None for a ``hello``, ``bye`` or a
        duplicate; :class:`ProtocolError` for what is not the site protocol, comes before its hello
        or belongs to a refused one."""
        msg = decode(parts, ("hello", "summaries", "bye"))
        if msg.kind == "hello":
            self._hello(msg.header, node, session)
            return None
        dim = self.dims.get((node, session))
        if dim is None:
            raise ProtocolError(f"{msg.kind} of node {node} session {session} without an accepted hello")
        if msg.kind == "bye":
            if (node, session) not in self._gone:
                self._gone.add((node, session))
                self.byes.append((node, session))
            return None
        if (node, session) in self._said_gone:
            raise ProtocolError(f"session {session} of node {node} was said gone: its node must start a new one")
        seq = msg.header.get("seq")
        if not isinstance(seq, int) or seq <= self.last_seq.get((node, session), 0):
            return None
        self.last_seq[(node, session)] = seq
        now, items = decode_tracklets(msg, dim)
        ended_elsewhere = self.mirror.take_dirty()  # an earlier session's tracklets, ended
        step = [t.summary() for t in ended_elsewhere]
        for t in ended_elsewhere:
            self.mirror.forget(t)
        for w in items:
            t, _ = self.mirror.absorb(node, session, w, False)
            self.origin[(t.camera, t.engine_id)] = (node, session, t.local_id)
            step.append(t.summary())
            if w.ended:
                self.mirror.forget(t)
        return now, step

    def would_step(self, parts: list[bytes], node: str, session: str) -> bool:
        """Whether :meth:`read` would make a step of this message now: a ``summaries`` message of
        an accepted session not said gone, its ``seq`` above the session's last, and not one
        whose step goes on in the next message (``more``: read on its own, so a step sent in
        several messages takes one step's turn in lockstep). Read without its arrays; what is
        malformed beyond the header still raises in :meth:`read`."""
        key = (node, session)
        if key not in self.dims or key in self._said_gone or len(parts) < 3:
            return False
        try:
            header = json.loads(parts[2])
            seq, more = header.get("seq"), header.get("more") is True
        except (ValueError, AttributeError, RecursionError):
            return False
        return parts[1] == b"summaries" and isinstance(seq, int) and seq > self.last_seq.get(key, 0) and not more

    def ended(self, node: str, session: str) -> bool:
        """The session said bye, its node started a new one, or its hub said it went silent
        (:meth:`end_session`)."""
        return (node, session) in self._gone or self.sessions.get(node, session) != session

    def end_session(self, node: str, session: str) -> Optional[list[TrackletSummary]]:
        """A node session gone silent without bye: its live tracklets end now (their summaries, for
        an engine step; the session's later messages are refused); None for a session unknown or
        ended already."""
        if (node, session) not in self.dims or (node, session) in self._gone:
            return None
        self._gone.add((node, session))
        self._said_gone = self._said_gone | {(node, session)}
        self.mirror.end_session(node, session)
        ended = self.mirror.take_dirty()
        for t in ended:
            self.mirror.forget(t)
        return [t.summary() for t in ended]

    def take_byes(self) -> list[tuple[str, str]]:
        """The sessions that said bye since the last call."""
        out, self.byes = self.byes, []
        return out

    def _hello(self, header: dict, node: str, session: str) -> None:
        if (node, session) in self.dims:
            return  # sent again (a retry after a lost acknowledgement)
        dim, cameras = int(header["embedding_dim"]), [str(c) for c in header["cameras"]]
        if self.embedding_dim is not None and dim != self.embedding_dim:
            raise ProtocolError(f"node {node}: {dim}-d embeddings, this hub's model makes {self.embedding_dim}-d")
        taken = sorted(c for c in cameras if self.owners.get(c, node) != node)
        if taken:
            raise ProtocolError(f"node {node}: cameras {taken} are another node's ({self.owners[taken[0]]})")
        old = self.sessions.get(node)
        if old is not None:
            self.mirror.end_session(node, old)
        self.sessions[node] = session
        self.owners.update({c: node for c in cameras})
        self.dims[(node, session)] = dim
        self.mirror.new_session(cameras)


def replay_steps(path: str | Path) -> Iterator[tuple[float, list[TrackletSummary]]]:
    """``(scene time, summaries)`` of every logged step, rebuilt as the engine was given them."""
    reader = StepReader()
    for _, parts in read_recording(path):
        try:
            step = reader.read(parts, *LOG_SESSION)
            if not reader.dims:
                raise ProtocolError("the first message is no hello")
        except (ProtocolError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a tracklet log ({exc})") from None
        if step is not None:
            yield step
    if not reader.dims:
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
