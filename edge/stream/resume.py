"""A node started again after it was killed carries on its session (replayable cameras only).

A node run on files or synthetic cameras in lockstep computes the same summaries messages each time
it runs. Killed midway, it left the first part of its session in the region's stream, the rest
never sent (or held in a buffer the kill lost). Started again it replays its cameras from the start:
rather than found a new session beside the killed one (whose tracklets, at the same scene times,
would stay identities the replay could join), it takes the killed session's name and sends only
the messages past the last one the stream holds. The region's hubs then read exactly the
messages of one uninterrupted run, and decide what they would have decided without the kill
(``edge/stream/site_ids.py`` reads the session's decisions from the start of the decision stream).

The replay's scene clock must be the killed run's too: every message says its cameras' clock
origin (a file's first frame is at that wall-clock time), and the replay starts its clock there.

A session is unfinished when the last message of the node's subject is not its ``bye``. It is
carried on only by a run of the same cameras and settings: every message of a replayable run
carries their hash (``Clipreid-Replay``, :attr:`~edge.runtime.config.EdgeConfig.replay_key`), and
another hash, or none (a live camera's run), starts a new session. The replay's message at that
number is also compared with the stored one (said when it differs). A live camera goes on in time
instead: a node with one starts a new session.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Optional

from nats.js.errors import NotFoundError

from edge.stream.frames import unpack
from edge.stream.names import EPOCH_HEADER, MSG_ID_HEADER, REPLAY_HEADER, SESSION_HEADER, Region
from edge.stream.streams import connect
from edge.wire.site_protocol import NODE_KINDS, ProtocolError, decode

log = logging.getLogger("edge.stream")


@dataclass(frozen=True)
class Unfinished:
    """A node session the stream holds without its ``bye``: ``sent`` messages, the last one ``last``,
    its cameras' scene clock from ``epoch`` (None: not said yet)."""

    session: str
    sent: int
    last: bytes
    epoch: Optional[float] = None
    replay: str = ""  # the run's cameras and settings, hashed ("": not a replayable run)


def unfinished_session(servers: list[str], region: Region, node: str, wait_s: float) -> Optional[Unfinished]:
    """The node's session that ended without ``bye``, None when its last one said it (or it has
    none); raises TimeoutError when no server answered within ``wait_s``."""
    return asyncio.run(asyncio.wait_for(_last_of(servers, region, node), wait_s))


async def _last_of(servers: list[str], region: Region, node: str) -> Optional[Unfinished]:
    nc = await connect(servers, f"{node} resume")
    try:
        js = nc.jetstream()
        while True:
            try:
                msg = await js.get_last_msg(region.summaries_stream, region.summaries_subject(node))
                break
            except NotFoundError:  # no stream yet, or no message of this node in it
                return None
            except Exception as exc:  # noqa: BLE001 - a cluster electing its leaders: ask again (wait_for bounds it)
                log.debug("stream: node %s's last message not readable yet (%s)", node, exc)
                await asyncio.sleep(0.25)
    finally:
        await nc.close()
    return read_last(msg.headers or {}, msg.data or b"")


def read_last(headers: dict[str, Any], payload: bytes) -> Optional[Unfinished]:
    """What the node's last stored message says: its session unfinished, or None (a ``bye``, or a
    message this module cannot place)."""
    session = headers.get(SESSION_HEADER)
    number = str(headers.get(MSG_ID_HEADER, "")).rsplit("-", 1)[-1]  # the publisher's <node>-<session>-<number>
    if not session or not number.isdigit():
        return None
    try:
        kind = decode(unpack(payload), NODE_KINDS).kind
    except (ProtocolError, ValueError):
        return None
    try:
        epoch: Optional[float] = float(headers[EPOCH_HEADER])
    except (KeyError, ValueError):
        epoch = None
    replay = str(headers.get(REPLAY_HEADER, ""))
    return None if kind == "bye" else Unfinished(session, int(number), payload, epoch, replay)
