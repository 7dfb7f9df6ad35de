"""What the hub tells after a step: each node its tracklets' site ids, the site its identity events.

Nodes get one ``ids`` message each: the site ids that changed, the ids that became final, and the
decisions about their own tracklets (so a node's events say what the hub decided). Subscribers get
the site's identity events (schema v2 plus ``node`` and the node's ``local_id``) on the hub's PUB
socket; publishing never waits (a slow subscriber loses messages at the high-water mark).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from edge.identity import Decision, Identity
from edge.site.mirror import HubTracklet
from edge.wire.events import decision_event
from edge.wire.publisher import EventPublisher

FinalTracklet = tuple[Optional[HubTracklet], int]  # (the mirror's tracklet if it has it, final site id)


def node_messages(
    decisions: list[Decision],
    changed: list[HubTracklet],
    finals: Sequence[FinalTracklet],
    by_engine_key: Mapping[tuple[str, int], HubTracklet],
    identities: Mapping[int, Identity],
) -> dict[str, dict[str, list[Any]]]:
    """Per node name, the body of its ``ids`` message (only nodes with something to hear)."""
    per_node: dict[str, dict[str, list[Any]]] = defaultdict(lambda: {"ids": [], "final": [], "decisions": []})
    for t in changed:
        per_node[t.node]["ids"].append([t.camera, t.local_id, t.told])
    for ft, gid in finals:
        if ft is not None:
            per_node[ft.node]["final"].append([ft.camera, ft.local_id, gid])
    for d in decisions:
        about = by_engine_key.get(d.key) if d.key is not None else None
        if about is not None:
            ident = identities.get(d.global_id)
            per_node[about.node]["decisions"].append(
                {
                    "kind": d.kind,
                    "global_id": d.global_id,
                    "camera": about.camera,
                    "local_id": about.local_id,
                    "previous": d.previous,
                    "cameras": sorted(ident.cameras) if ident else list(d.cameras),
                    "last_seen": ident.last_seen if ident else about.last_seen,
                }
            )
    return per_node


def publish_decisions(
    publisher: EventPublisher,
    decisions: list[Decision],
    by_engine_key: Mapping[tuple[str, int], HubTracklet],
    identities: Mapping[int, Identity],
    send_embeddings: bool,
) -> int:
    """The decisions as identity events; returns how many were published."""
    for d in decisions:
        ident = identities.get(d.global_id)
        t = by_engine_key.get(d.key) if d.key is not None else None
        header = decision_event(d, ident, t)
        if t is not None:
            header.update(node=t.node, local_id=t.local_id)
        emb = ident.embedding if (ident is not None and send_embeddings) else None
        publisher.publish(f"identity/{d.global_id}", header, emb)
    return len(decisions)
