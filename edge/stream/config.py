"""``stream:`` in a node's camera file: publish its tracklet summaries to a region's stream.

The region's hubs decide the site's identities from every node's summaries (``python -m
edge.stream hub``). With ``site_ids`` (the default) the node takes them back from the region's
decision stream for its MOT files and events, and decides with provisional ids of its own while
the region has no active hub (``edge/stream/site_ids.py``); without, it keeps its own ids and only
publishes. Only this module is imported by the runtime's config: the NATS client comes with the
``site`` extra and is loaded only by a node that streams.
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from core.configio import StrictModel
from edge.site.config import local_id_base
from edge.stream.names import LEASE_S

MAX_BUFFERED = 200_000  # ~33 minutes of a node sending 100 messages a second


class StreamConfig(StrictModel):
    servers: list[str] = Field(min_length=1, description="NATS URLs of the site's servers (any of them will do)")
    region: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="the region this node's cameras belong to")
    node: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="this node's name (unique in the region)")
    replicas: int = Field(1, ge=1, le=5, description="copies of the region's streams (3 on a 3-server cluster)")
    max_buffered: int = Field(
        MAX_BUFFERED, ge=100, description="summaries kept while the servers are away (the oldest go first)"
    )
    site_ids: bool = Field(
        True, description="take the site ids back from the region's decisions (false: keep the node's own)"
    )
    flush_timeout_s: float = Field(10.0, ge=0, description="at the end, wait this long for the hub's final ids")
    resume: bool = Field(
        True,
        description="a node killed while it ran replayable cameras in lockstep carries on its session when "
        "started again (what the stream holds is not sent again)",
    )
    epoch: Optional[float] = Field(
        None, description="scene time of file/synthetic cameras' first frame (one clock for a region of file nodes)"
    )
    local_ids_from: Optional[int] = Field(
        None, ge=1, le=2**52, description="first provisional id while no hub decides (default: from the node's name)"
    )

    # what the node's ids (edge.site.node_ids.IdsConfig) read
    @property
    def hub(self) -> str:
        return f"of region {self.region}"

    @property
    def buffer(self) -> int:
        return self.max_buffered

    @property
    def hub_timeout_s(self) -> float:
        return 2 * LEASE_S  # no lease holder this long: the region has no active hub

    def local_id_base(self) -> int:
        return local_id_base(self.node, self.local_ids_from)
