"""Where a region's messages live: its streams, subjects and lease.

A region is a set of cameras people walk between (a site may have several, each with its own
hub). Its summaries stream holds every node's summaries messages (subject per node), its decision
stream the decisions its active hub published (one message per engine step that decided
something, or ended tracklets). The lease bucket holds one key per region: the active hub's name
and its settings' fingerprint, kept alive by the hub and gone when it stops renewing it (the
bucket's time to live).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LEASE_BUCKET = "clipreid_leases"
LEASE_S = 2.0  # an active hub silent this long is replaced (failover within about this plus a second)
NODE_HEADER = "Clipreid-Node"  # the node and its session (a restarted node starts a new one)
SESSION_HEADER = "Clipreid-Session"
EPOCH_HEADER = "Clipreid-Epoch"  # the scene clock origin of its cameras (a carried-on session keeps it)
REPLAY_HEADER = "Clipreid-Replay"  # a replayable run's cameras and settings, hashed (only its replay carries it on)
LIVE_HEADER = "Clipreid-Live"  # "1": its scene time is its wall clock (not files in lockstep): the hub checks it
STEP_HEADER = "Clipreid-Step"  # on a decision message: the summaries stream position it decided at
PART_HEADER = "Clipreid-Part"  # and, in lockstep, its place among the messages of that position (after the first)
HUB_HEADER = "Clipreid-Hub"  # and the hub that published it
MSG_ID_HEADER = "Nats-Msg-Id"  # JetStream's: a message sent again with its id is stored once
HEARTBEAT_S = 1.0  # an ordered reader missing its server's heartbeats this long starts again where it was
GONE_HEADER = "Clipreid-Gone"  # on a summaries stream's message: the active hub says this node session went silent
HANDOVER_HEADER = "Clipreid-Handover"  # on a summaries stream's message: a person handed over by this region
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def lease_value(hub: str, fingerprint: str) -> bytes:
    """What the active hub keeps in its region's lease key: its name and what it decides with (a
    standby of other settings would decide otherwise after a takeover: it refuses to run)."""
    return f"{hub} {fingerprint}".encode()


def lease_holder(value: bytes | None) -> tuple[str | None, str]:
    """(hub name, settings fingerprint) from a lease key's value; (None, "") when nobody holds it."""
    hub, _, fingerprint = (value or b"").decode().rpartition(" ")  # a name may have spaces, a fingerprint not
    if not hub:  # a holder that wrote its name alone (before fingerprints)
        return fingerprint or None, ""
    return hub, fingerprint


@dataclass(frozen=True)
class Region:
    name: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"region {self.name!r}: letters, digits, '-' and '_' only")

    @property
    def summaries_stream(self) -> str:
        return f"CLIPREID_{self.name.upper().replace('-', '_')}_SUMMARIES"

    @property
    def decisions_stream(self) -> str:
        return f"CLIPREID_{self.name.upper().replace('-', '_')}_DECISIONS"

    def summaries_subject(self, node: str = "*") -> str:
        return f"clipreid.{self.name}.summaries.{node}"

    @property
    def decisions_subject(self) -> str:
        return f"clipreid.{self.name}.decisions"
