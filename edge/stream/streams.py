"""Connecting to the servers and making a region's streams and the lease bucket (idempotent: every
node and hub of a region ensures them, whichever starts first)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Optional

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError
from nats.js.kv import KeyValue

from edge.stream.names import LEASE_BUCKET, Region

log = logging.getLogger("edge.stream")

STREAM_NAME_IN_USE = 10058  # JetStream's error code: a stream of that name exists with another configuration
DUPLICATE_WINDOW_S = 3600.0  # a message sent again within this is stored once (the server remembers its id)
DAY_S = 86400.0


FIRST_CONNECT_S = 2.0  # a server's first answer, each server tried: then said, and tried again


async def connect(
    servers: list[str],
    name: str,
    disconnected: Callable[[], Awaitable[None]] | None = None,
    reconnected: Callable[[], Awaitable[None]] | None = None,
    give_up: Callable[[], bool] = lambda: False,
    failed: Callable[[object], None] | None = None,
) -> Any:
    """A client that reconnects forever (and keeps trying to connect at all until a server answers,
    saying so once, and each time to ``failed``); None once ``give_up()``."""
    said = False
    while not give_up():
        nc = NATS()
        try:  # bounded: a client that may reconnect for ever also tries its first connect for ever
            await asyncio.wait_for(
                nc.connect(
                    servers,
                    name=name,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,  # type: ignore[arg-type]  # seconds: nats-py types them int
                    connect_timeout=1.0,  # type: ignore[arg-type]
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=_quiet,
                ),
                FIRST_CONNECT_S * len(servers),
            )
            return nc
        except Exception as exc:  # noqa: BLE001 - no server yet: try again
            try:
                await nc.close()
            except Exception:  # noqa: BLE001 - never connected: nothing to close
                pass
            why = "no answer" if isinstance(exc, asyncio.TimeoutError) else exc
            if failed is not None:
                failed(why)
            if not said:
                log.warning("stream: %s cannot reach %s yet (%s): trying again", name, ",".join(servers), why)
                said = True
            await asyncio.sleep(0.25)
    return None


async def retry(
    make: Callable[[], Awaitable[Any]],
    stopping: Callable[[], bool] = lambda: False,
    failed: Optional[Callable[[Exception], None]] = None,
    wait_s: float = 0.25,
) -> Any:
    """``await make()`` until it succeeds (a cluster still electing its leaders, a stream not made
    yet), each failure to ``failed`` (default: a debug line); None when ``stopping()`` first."""
    while not stopping():
        try:
            return await make()
        except Exception as exc:  # noqa: BLE001 - whatever the servers answer now, they may not later
            if failed is not None:
                failed(exc)
            else:
                log.debug("stream: not ready yet (%s)", exc)
            await asyncio.sleep(wait_s)
    return None


async def _quiet(exc: Exception) -> None:
    """The client's errors while it reconnects (a traceback per attempt otherwise): the publisher
    and the hub say what matters (the link down, back, a publish that failed)."""
    log.debug("stream: client error: %s", exc)


async def ensure_streams(js: JetStreamContext, region: Region, replicas: int = 1, keep_s: float = 7 * DAY_S) -> None:
    """The region's summaries and decision streams (file storage, ``replicas`` copies, kept ``keep_s``)."""
    for name, subject in (
        (region.summaries_stream, region.summaries_subject()),
        (region.decisions_stream, region.decisions_subject),
    ):
        config = StreamConfig(
            name=name,
            subjects=[subject],
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=min(DUPLICATE_WINDOW_S, keep_s),
            max_age=keep_s,
        )
        try:
            await js.add_stream(config)
        except BadRequestError as exc:
            if exc.err_code != STREAM_NAME_IN_USE:
                raise
            have = (await js.stream_info(name)).config  # made by another node or hub, otherwise: use it as it is
            if have.num_replicas != replicas:
                log.warning(
                    "stream %s has %s replicas, not the %d asked for: kept as it is", name, have.num_replicas, replicas
                )


async def lease_bucket(js: JetStreamContext, lease_s: float, replicas: int = 1) -> tuple[KeyValue, float]:
    """The hubs' lease bucket (one for the site: every region's key) and its time to live: an entry
    not renewed for that long is gone. The first hub makes it with ``lease_s``; the bucket's time
    to live is fixed from then on, so a hub that finds it made returns the bucket's own (its caller
    renews within that, whatever ``--lease-s`` it was given)."""
    try:
        kv = await js.key_value(LEASE_BUCKET)
    except BucketNotFoundError:
        config = KeyValueConfig(LEASE_BUCKET, ttl=lease_s, replicas=replicas, storage=StorageType.FILE, history=1)
        return await js.create_key_value(config), lease_s
    ttl = (await kv.status()).ttl
    return kv, float(ttl) if ttl else lease_s
