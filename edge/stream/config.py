"""``stream:`` in a node's camera file: publish its tracklet summaries to a region's stream.

The node keeps deciding its own identities (its MOT files and events, as a single box); the
region's hubs decide the site's from every node's summaries (``python -m edge.stream hub``).
Only this module is imported by the runtime's config: the NATS client comes with the ``site``
extra and is loaded only by a node that streams.
"""

from __future__ import annotations

from pydantic import Field

from core.configio import StrictModel

MAX_BUFFERED = 200_000  # ~33 minutes of a node sending 100 messages a second


class StreamConfig(StrictModel):
    servers: list[str] = Field(min_length=1, description="NATS URLs of the site's servers (any of them will do)")
    region: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="the region this node's cameras belong to")
    node: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="this node's name (unique in the region)")
    replicas: int = Field(1, ge=1, le=5, description="copies of the region's streams (3 on a 3-server cluster)")
    max_buffered: int = Field(
        MAX_BUFFERED, ge=100, description="summaries kept while the servers are away (the oldest go first)"
    )
