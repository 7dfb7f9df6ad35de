"""Across regions: a person who leaves one region's cameras keeps their identity in the next.

Decided: **a hand-over through the engine's transitions between boundary cameras**, not a shared
gallery search. A region's hub is told which of its cameras border which region
(``--hand-over yard:cam3``). When a tracklet ends at such a camera, the hub sends the person's
identity (its id, its appearance as the engine compares it, where and when last seen) into the
neighbouring region's summaries stream, as one more message in that stream's one order. That
region's hubs welcome it into their engine (:meth:`~edge.identity.IdentityEngine.welcome`) as an
identity without tracklets, which their own tracklets join by the usual rules, the transition
from the boundary camera to their entry camera included (declared in that region's
``matching.transitions``, or learned). Why not a shared gallery: a search across regions at every
new tracklet would make each region's decisions depend on another region's progress, so two hubs
of one region could decide differently; a message in the region's own stream keeps every hub of
the region deterministic, is replicated and kept like everything else there, and costs nothing
when nobody crosses.

Ids stay unique across the site by ranges: each region's hub founds ids from its ``--id-base``
(give regions bases far apart, e.g. 1 000 000 each); a handed-over identity keeps its id.

The message is the site protocol's framing (``edge/wire/site_protocol.py``), kind ``handover``, its
appearance as arrays; published by the active hub only, with a message id made of the region, the
step and the id (a standby that takes over publishes the same bytes under the same id: stored once),
and before the step's decision message (so a step on the decision stream has had its hand-overs sent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from core.embeddings import Embeddings
from edge.identity import Identity
from edge.wire.site_protocol import decode, encode

KIND = "handover"


@dataclass(frozen=True)
class Outgoing:
    """A hand-over waiting to be published: to ``region``'s summaries stream, under ``msg_id``."""

    region: str
    msg_id: str
    parts: list[bytes]


def parse_hand_over(specs: list[str]) -> dict[str, str]:
    """``["yard:cam3,cam4", "dock:cam9"]`` -> boundary camera -> the region it leads to."""
    out: dict[str, str] = {}
    for spec in specs:
        region, sep, cameras = spec.partition(":")
        names = [c for c in cameras.split(",") if c]
        if not sep or not region or not names:
            raise ValueError(f"--hand-over {spec!r}: REGION:CAMERA[,CAMERA...] expected")
        for camera in names:
            if out.get(camera, region) != region:
                raise ValueError(f"--hand-over: camera {camera} borders both {out[camera]} and {region}")
            out[camera] = region
    return out


def handover_message(source: str, ident: Identity, appearance: Optional[Embeddings], weight: float) -> list[bytes]:
    """The identity as region ``source`` last saw it, with the appearance its engine compares."""
    header = {
        "region": source,
        "global_id": int(ident.global_id),
        "created": float(ident.created),
        "last_seen": float(ident.last_seen),
        "last_camera": ident.last_camera,
        "cameras": sorted(ident.cameras),
        "last_box": None if ident.last_box is None else [float(v) for v in ident.last_box],
        "weight": float(weight),
    }
    arrays: list[np.ndarray] = []
    if appearance is not None:
        arrays = [appearance.global_]
        if appearance.parts is not None and appearance.part_conf is not None:
            arrays += [appearance.parts, appearance.part_conf]
    return encode(KIND, header, arrays)


def read_handover(parts: list[bytes]) -> tuple[str, Identity]:
    """(the region it came from, the identity to welcome); ValueError for what is not one."""
    msg = decode(parts, (KIND,))
    h = msg.header
    appearance = None
    if msg.arrays:
        extra = msg.arrays[1:3] if len(msg.arrays) == 3 else [None, None]
        appearance = Embeddings(msg.arrays[0].copy(), *(None if a is None else a.copy() for a in extra))
    box = h.get("last_box")
    ident = Identity(
        int(h["global_id"]),
        float(h["created"]),
        float(h["last_seen"]),
        str(h["last_camera"]),
        {str(c) for c in h.get("cameras", [])},
        last_box=None if box is None else np.asarray(box, np.float64),
        past=appearance,
        past_weight=float(h.get("weight", 1.0)),
        embedding=None if appearance is None else appearance.global_[0].copy(),
    )
    return str(h["region"]), ident
