"""Connecting to the servers and making a region's streams and the lease bucket (idempotent: every
node and hub of a region ensures them, whichever starts first)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from edge.stream.names import LEASE_BUCKET, Region

DUPLICATE_WINDOW_S = 3600.0  # a message sent again within this is stored once (the server remembers its id)
DAY_S = 86400.0


async def connect(
    servers: list[str],
    name: str,
    disconnected: Callable[[], Awaitable[None]] | None = None,
    reconnected: Callable[[], Awaitable[None]] | None = None,
) -> Any:
    """A client that reconnects forever (and keeps trying to connect at all until a server answers)."""
    while True:
        try:
            return await nats.connect(
                servers,
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.25,
                connect_timeout=1.0,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
            )
        except Exception:  # noqa: BLE001 - no server yet: try again
            await asyncio.sleep(0.25)


async def ensure_streams(js: JetStreamContext, region: Region, replicas: int = 1, keep_s: float = 7 * DAY_S) -> None:
    """The region's summaries and decision streams (file storage, ``replicas`` copies, kept ``keep_s``)."""
    for name, subject in (
        (region.summaries_stream, region.summaries_subject()),
        (region.decisions_stream, region.decisions_subject),
    ):
        await js.add_stream(
            StreamConfig(
                name=name,
                subjects=[subject],
                storage=StorageType.FILE,
                num_replicas=replicas,
                duplicate_window=DUPLICATE_WINDOW_S,
                max_age=keep_s,
            )
        )


async def lease_bucket(js: JetStreamContext, lease_s: float, replicas: int = 1) -> KeyValue:
    """The hubs' lease bucket: an entry not renewed for ``lease_s`` is gone."""
    try:
        return await js.key_value(LEASE_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(bucket=LEASE_BUCKET, ttl=lease_s, replicas=replicas, storage=StorageType.FILE, history=1)
        )
