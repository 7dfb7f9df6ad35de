"""What outlives an engine step at the hub: the FAISS gallery and the SQLite store.

After each step the gallery follows the identities the step touched (a sealed identity leaves it:
nothing joins it), then the step is one store transaction: the touched identities, the mirror's
tracklets with their site ids, and the counters, committed *before* the step is published
(:mod:`edge.site.store`). On start the store is read back: identities, the next global id, the
cameras' engine id bases and, for tracklets not final when the hub stopped, the site id told
(*pinned*: a node that resends them gets it back).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Optional

from edge.identity import Decision, IdentityEngine
from edge.site.gallery import Gallery
from edge.site.mirror import HubTracklet, Mirror
from edge.site.nearest import follow_engine, index_identities
from edge.site.store import Store, TrackletRow

log = logging.getLogger("edge.site.hub_service")  # the hub's log lines keep their logger name

Final = tuple[tuple[str, int], int]  # (engine key, final site id)


class Persistence:
    """The gallery and the optional store, kept in step with the engine."""

    def __init__(self, engine: IdentityEngine, gallery: Gallery, store: Optional[Store]):
        self.engine = engine
        self.gallery = gallery
        self.store = store
        self.next_gid = 1

    def reload(self, mirror: Mirror) -> int:
        """The store's state into the engine, the gallery and the mirror; returns the number of
        identities (an SQLite error, e.g. another program's database, is the caller's to report)."""
        store = self.store
        if store is None:
            return 0
        identities = store.identities()
        meta: dict[str, Any] = store.meta()
        sealed = set(meta.get("sealed", []))
        for ident in identities:
            ident.sealed = ident.global_id in sealed
        self.engine.restore(identities, int(meta.get("next_gid", 1)), meta.get("centering"))
        mirror.bases = {k: int(v) for k, v in meta.get("bases", {}).items()}
        for row in store.tracklets():
            mirror.max_engine_id[row.camera] = max(mirror.max_engine_id[row.camera], row.engine_id)
            if row.site_id is not None and not row.final:
                mirror.pinned[(row.node, row.session, row.camera, row.local_id)] = row.site_id
        index_identities(self.gallery, identities)
        self.next_gid = int(meta.get("next_gid", 1))
        if identities:
            log.info(
                "hub: reloaded %d identities and %d pinned tracklets from %s",
                len(identities),
                len(mirror.pinned),
                store.path,
            )
        return len(identities)

    def save(
        self,
        decisions: list[Decision],
        finals: Sequence[Final],
        touched_tracklets: list[HubTracklet],
        bases: dict[str, int],
    ) -> None:
        """After a step: the gallery follows it, then (with a store) one transaction."""
        engine = self.engine
        alive, removed = follow_engine(self.gallery, engine, decisions, finals)
        if self.store is None:
            return
        final_keys = {k for k, _ in finals}
        rows = [
            TrackletRow(
                t.node,
                t.session,
                t.camera,
                t.local_id,
                t.engine_id,
                engine.global_id((t.camera, t.engine_id)) or t.told,
                (t.camera, t.engine_id) in final_keys,
            )
            for t in touched_tracklets
        ]
        next_gid = max([self.next_gid, *(d.global_id + 1 for d in decisions)])
        self.next_gid = next_gid
        meta: dict[str, object] = {"next_gid": next_gid, "bases": bases}
        if finals:  # camera looks change when tracklets go final
            meta["centering"] = engine.centering_state()
        if any(d.kind == "new" for d in decisions):
            meta["sealed"] = sorted(g for g, i in engine.identities.items() if i.sealed)
        self.store.save(alive, removed, rows, meta)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
