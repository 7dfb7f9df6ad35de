"""The engine's nearest-identity seam over a FAISS gallery, for both hubs (``edge.hub`` and the
stream's region hubs): which identities a waiting tracklet is scored against, and the gallery kept
in step with the engine after each step.

Below ``exact_below`` identities every identity is scored, exactly as one process would; above, the
gallery's ``k`` nearest to each tracklet's compared look plus the identities active now. Past
identities thus cost a search, not a score each: a step's cost stays about flat as a site's
gallery grows (docs/site.md "Benchmark").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Optional

import numpy as np

from edge.identity import Decision, Identity, IdentityEngine, TrackletSummary
from edge.site.gallery import Gallery, candidates_for


def nearest_candidates(
    engine: IdentityEngine, gallery: Gallery, waiting: list[TrackletSummary], exact_below: int, k: int
) -> Optional[list[Iterable[int]]]:
    """What the gallery proposes per tracklet, plus the identities active now (None: score every identity)."""
    if len(engine.identities) < exact_below:
        return None  # small site: every identity, exactly as one process would
    active = set(engine.assignment.values())
    looks = [engine.look(s) for s in waiting]  # what the engine compares (camera-centered when on)
    found = candidates_for(gallery, [None if a is None else a.global_[0] for a in looks], k)
    return [ids | active for ids in found]


def index_identities(gallery: Gallery, identities: Iterable[Identity], gone: Sequence[int] = ()) -> None:
    """Identities' vectors into the gallery (nothing joins a sealed one), ``gone`` out of it."""
    vectors = [(i.global_id, i.embedding) for i in identities if i.embedding is not None and not i.sealed]
    if vectors or gone:
        stacked = np.stack([v for _, v in vectors]) if vectors else np.zeros((0, gallery.dim), np.float32)
        gallery.upsert([g for g, _ in vectors], stacked, gone)


def follow_engine(
    gallery: Gallery, engine: IdentityEngine, decisions: list[Decision], finals: Sequence[tuple[tuple[str, int], int]]
) -> tuple[list[Identity], list[int]]:
    """After a step: the identities it touched re-indexed, the ones it removed (merged, expired)
    gone; returns both (what a store saves)."""
    touched = {d.global_id for d in decisions} | {d.previous for d in decisions if d.previous is not None}
    touched |= set(engine.assignment.values()) | {gid for _, gid in finals}
    alive = [engine.identities[g] for g in sorted(touched) if g in engine.identities]
    removed = [g for g in touched if g not in engine.identities]
    index_identities(gallery, alive, removed)
    return alive, removed


def resync(gallery: Gallery, engine: IdentityEngine) -> None:
    """The gallery made to hold exactly the engine's identities again, after a step that failed
    midway (what it changed before failing is unknown): every identity re-indexed, every id the
    engine no longer has (or that nothing may join) removed. Every hub fails at the same message,
    so each resyncs alike."""
    ids = {int(g) for g in gallery._contents()[0]}
    for ident in engine.identities.values():  # the step did not get to refreshing them
        app = engine.appearance(ident)
        ident.embedding = None if app is None else app.global_[0]
    keep = [i for i in engine.identities.values() if i.embedding is not None and not i.sealed]
    index_identities(gallery, keep, sorted(ids - {i.global_id for i in keep}))
