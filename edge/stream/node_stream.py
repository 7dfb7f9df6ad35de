"""A node's side of the region stream: each engine step's summaries, as the tracklet log writes them
(``hello`` first, then ``summaries`` with appearances only when they changed), published to the
region's stream under a new session per start (a restarted node's local ids start again), or, for a
node replaying its cameras after it was killed, the killed one's (``edge/stream/resume.py``)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Optional

from edge.identity.records import TrackletSummary
from edge.site.tracklet_log import SummaryWriter
from edge.stream.config import StreamConfig
from edge.stream.names import Region
from edge.stream.publisher import SummaryPublisher
from edge.stream.resume import Unfinished, unfinished_session

log = logging.getLogger("edge.stream")

MESSAGE_BYTES = 512 * 1024  # half a server's default max_payload (1 MB): what one re-send message may carry
CLOSE_WAIT_S = 10.0  # at the end, how long the run waits for the stream to take what is buffered
RESUME_WAIT_S = 10.0  # at the start, how long a replayable node waits to learn whether it was killed


class StreamOutput:
    """``write(now, summaries)`` each step; ``close()`` sends what is left (see the module docstring)."""

    def __init__(
        self,
        cfg: StreamConfig,
        cameras: list[str],
        embedding_dim: int,
        on_hub: Optional[Callable[[bool, float], None]] = None,
        replay: str = "",
    ):
        """``on_hub(away, since)``: the region's hub found away or back (``edge/stream/hub_watch.py``);
        ``replay``: the node's cameras give the same frames each run (lockstep files or synthetic
        cameras), and this hashes them with its settings (``EdgeConfig.replay_key``): a session its
        killed run of the same key left unfinished is carried on."""
        self.resumed = resumable_session(cfg, Region(cfg.region), replay) if replay and cfg.resume else None
        self.session = self.resumed.session if self.resumed else uuid.uuid4().hex[:12]
        self.cfg, self.cameras, self.embedding_dim = cfg, cameras, embedding_dim
        self.publisher = SummaryPublisher(
            cfg.servers, Region(cfg.region), cfg.node, self.session, cfg.max_buffered, cfg.replicas, on_hub,
            self.resumed, replay,
        )  # fmt: skip
        self.writer = self._writer()
        log.info(
            "stream: node %s publishes to region %s on %s (session %s)",
            cfg.node,
            cfg.region,
            ",".join(cfg.servers),
            self.session,
        )

    def _writer(self) -> SummaryWriter:
        """This session's messages (its ``hello`` first) into the publisher."""
        sink = lambda parts, now: self.publisher.send(parts)  # noqa: E731
        return SummaryWriter(sink, self.cameras, self.embedding_dim, self.cfg.node, self.session)

    def new_session(self) -> str:
        """This node's session was said gone (it was silent past the hub's node timeout, cut off):
        the next messages are a new session's, whose summaries the writer sends in full; the old
        session's messages still buffered are dropped (the hub refuses them)."""
        old, self.session, self.resumed = self.session, uuid.uuid4().hex[:12], None
        dropped = self.publisher.new_session(self.session)
        self.writer = self._writer()
        log.warning(
            "stream: region %s's hub said node %s's session %s gone (silent past its node timeout): a new session "
            "%s carries on, with every tracklet not yet final sent again (%d messages of the old one dropped)",
            self.cfg.region, self.cfg.node, old, self.session, dropped,
        )  # fmt: skip
        return self.session

    @property
    def replaying(self) -> bool:
        """A carried-on session whose replay has not yet made every message the stream holds."""
        return self.resumed is not None and self.publisher.made < self.resumed.sent

    def scene_epoch(self, fresh: float) -> float:
        """The scene clock origin of this session's cameras: the carried-on session's, else
        ``fresh``; said in every message from now on."""
        epoch = self.resumed.epoch if self.resumed is not None and self.resumed.epoch is not None else fresh
        self.publisher.epoch = epoch
        return epoch

    def write(self, now: float, summaries: Iterable[TrackletSummary]) -> None:
        self.writer.write(now, summaries)

    def write_again(self, now: float, summaries: list[TrackletSummary]) -> None:
        """Tracklets sent again in full (a new session's first step): in as many messages as keep
        each below :data:`MESSAGE_BYTES` (a thousand tracklets with their appearance and floor
        track would be past a server's ``max_payload``): :func:`write_in_chunks`."""
        write_in_chunks(self.writer, now, summaries)

    def report(self) -> dict[str, Any]:
        return {"session": self.session, **self.publisher.stats()}

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """The session's ``bye``, then up to ``wait_s`` for the stream to take what is buffered
        (less when the site ids' flush already waited out the run's ``flush_timeout_s``)."""
        self.writer.bye()  # the hub makes this session's tracklets final (if site ids did not say it already)
        self.publisher.close(wait_s)
        left = self.publisher.buffered
        if left:
            log.error("stream: %d summaries messages not in the region's stream at the run's end: lost", left)


def resumable_session(cfg: StreamConfig, region: Region, replay: str) -> Optional[Unfinished]:
    """The session this node's killed run of the same cameras and settings (``replay``) left
    unfinished (said in the log), None for a new one."""
    try:
        found = unfinished_session(cfg.servers, region, cfg.node, RESUME_WAIT_S)
    except (TimeoutError, asyncio.TimeoutError):
        log.warning(
            "stream: no server of %s answered within %g s: node %s starts a new session (a killed run's is not "
            "carried on)", ",".join(cfg.servers), RESUME_WAIT_S, cfg.node,
        )  # fmt: skip
        return None
    if found is not None and found.replay != replay:
        log.info(
            "stream: node %s's last session %s was not ended, by a run of other cameras or settings: a new "
            "session", cfg.node, found.session,
        )  # fmt: skip
        return None
    if found is not None:
        log.warning(
            "stream: node %s was stopped without ending its session %s: it carries it on (the %d messages the "
            "region's stream holds are not sent again)", cfg.node, found.session, found.sent,
        )  # fmt: skip
    return found


def wire_bytes(s: TrackletSummary) -> int:
    """The most a tracklet takes in a message: its row, its appearance and its whole floor track."""
    size = 600  # the JSON row and its boxes
    app = s.appearance
    if app is not None:
        size += 4 * sum(a.size for a in (app.global_, app.parts, app.part_conf) if a is not None)
    if s.floor is not None:
        size += 24 * len(s.floor)  # time, x, y
    return size


def write_in_chunks(writer: SummaryWriter, now: float, summaries: list[TrackletSummary]) -> None:
    """One step in :func:`message_chunks`; all but the last say ``more``, so a lockstep hub pairs
    the step with the other nodes' once, not once per message."""
    chunks = message_chunks(summaries)
    for i, chunk in enumerate(chunks):
        writer.write(now, chunk, more=i < len(chunks) - 1)


def message_chunks(summaries: list[TrackletSummary], limit: int = MESSAGE_BYTES) -> list[list[TrackletSummary]]:
    """``summaries`` in order, in runs of at most ``limit`` bytes each (one at least; none: one empty run)."""
    chunks: list[list[TrackletSummary]] = [[]]
    size = 0
    for s in summaries:
        n = wire_bytes(s)
        if chunks[-1] and size + n > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(s)
        size += n
    return chunks
