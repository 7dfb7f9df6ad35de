"""A node's side of the region stream: each engine step's summaries, as the tracklet log writes them
(``hello`` first, then ``summaries`` with appearances only when they changed), published to the
region's stream under a new session per start (a restarted node's local ids start again)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Optional

from edge.identity.records import TrackletSummary
from edge.site.tracklet_log import SummaryWriter
from edge.stream.config import StreamConfig
from edge.stream.names import Region
from edge.stream.publisher import SummaryPublisher

log = logging.getLogger("edge.stream")

CLOSE_WAIT_S = 10.0  # at the end, how long the run waits for the stream to take what is buffered


class StreamOutput:
    """``write(now, summaries)`` each step; ``close()`` sends what is left (see the module docstring)."""

    def __init__(
        self,
        cfg: StreamConfig,
        cameras: list[str],
        embedding_dim: int,
        on_hub: Optional[Callable[[bool, float], None]] = None,
    ):
        """``on_hub(away, since)``: the region's hub found away or back (``edge/stream/hub_watch.py``)."""
        self.session = uuid.uuid4().hex[:12]
        self.publisher = SummaryPublisher(
            cfg.servers, Region(cfg.region), cfg.node, self.session, cfg.max_buffered, cfg.replicas, on_hub
        )
        self.writer = SummaryWriter(
            lambda parts, now: self.publisher.send(parts), cameras, embedding_dim, cfg.node, self.session
        )
        log.info(
            "stream: node %s publishes to region %s on %s (session %s)",
            cfg.node,
            cfg.region,
            ",".join(cfg.servers),
            self.session,
        )

    def write(self, now: float, summaries: Iterable[TrackletSummary]) -> None:
        self.writer.write(now, summaries)

    def report(self) -> dict[str, Any]:
        return {"session": self.session, **self.publisher.stats()}

    def close(self) -> None:
        self.writer.bye()  # the hub makes this session's tracklets final (if site ids did not say it already)
        self.publisher.close(CLOSE_WAIT_S)
        left = self.publisher.buffered
        if left:
            log.error("stream: %d summaries messages not in the region's stream after %g s: lost", left, CLOSE_WAIT_S)
