"""The identity engine's state: the identities, their tracklets, what each looks like, and how
well a tracklet fits one.

Everything here changes the state one step at a time (a tracklet founds, joins or leaves an
identity; two identities fold into one; a tracklet becomes final) or reads it (an identity's
appearance, the score of a tracklet for an identity). *When* to take which step is the engine's
(``engine.py``) and the revision's (``revision.py``); *what may never join* is ``rules.py``'s.

Appearances are compared camera-centered when the settings say so (``centering.py``): each camera's
mean look is learnt from the tracklets it shows and taken out before any cosine.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Optional

import numpy as np

from core.embeddings import Embeddings, similarity, weighted_mean
from edge.identity.centering import CameraCentering
from edge.identity.geometry import FloorTrack
from edge.identity.records import Decision, DecisionKind, Identity, Key, TrackletSummary
from edge.identity.rules import FORBIDDEN, Rules
from edge.identity.settings import EngineSettings
from edge.identity.topology import Transition

MAX_SPANS = 8  # final tracklets' time spans remembered per identity and camera

Candidates = Callable[[list[TrackletSummary]], Optional[list[Iterable[int]]]]


class Count:
    """``itertools.count`` that pickles on every Python (a hub checkpoints the whole state:
    ``edge/stream/checkpoint.py``; pickling itertools objects is gone from Python 3.14)."""

    def __init__(self, start: int = 0, step: int = 1):
        self.value, self.step = start, step

    def __next__(self) -> int:
        value = self.value
        self.value += self.step
        return value


class EngineState:
    """Identities and their tracklets, with the steps that change them and the score that compares them."""

    def __init__(self, settings: EngineSettings, candidates: Optional[Candidates] = None):
        """``candidates``: optional nearest-identity search (a site hub's FAISS gallery): given
        tracklets, the global ids worth scoring for each, or None for "every identity". Without it
        every identity is scored (the single-box runtime)."""
        self.cfg = settings
        self.rules = Rules(settings)
        self.candidates = candidates
        self.identities: dict[int, Identity] = {}
        self.records: dict[Key, TrackletSummary] = {}
        self.assignment: dict[Key, int] = {}
        self._joined: dict[Key, int] = {}  # when each tracklet joined its identity (newest is doubted first)
        self._order = Count()
        self._scratch_ids = Count(-1, -1)  # ids of identities built only to be scored
        self._ids = Count(1)
        self._first_id = 1  # this engine founds ids from here (a region's range: IdentityEngine.restore)
        self._welcomed: set[int] = set()  # ids handed over by another engine (IdentityEngine.welcome)
        # (last seen, id) of identities that were left without tracklets: expiry reads the oldest
        # first instead of every identity each step (entries go stale; expiry checks each it pops)
        self._idle: list[tuple[float, int]] = []
        self._final: list[tuple[Key, int]] = []
        # id -> (tracklet left out or None) -> that identity's appearance: an identity's entries go
        # when its members or past change (_changed), all of them when the tracklets' looks do
        self._appearance_cache: dict[int, dict[Optional[Key], Optional[Embeddings]]] = {}
        # the appearance of an identity without tracklets (its past alone) across steps: a large
        # gallery's look-alikes are mostly such, and their look changes only with their past
        self._past_looks: dict[int, Embeddings] = {}
        self.centering: Optional[CameraCentering] = None  # built at the first appearance (its size)
        self._centering_state: Optional[dict] = None  # restored, applied when centering is built
        self._looks: dict[Key, Embeddings] = {}

    def __len__(self) -> int:
        return len(self.identities)

    def __getstate__(self) -> dict:
        """The state without its ``candidates`` search (its owner's: a loader gives its own) and
        without the appearance caches (rebuilt on demand): what a hub's checkpoint keeps."""
        state = self.__dict__.copy()
        state["candidates"], state["_appearance_cache"], state["_past_looks"] = None, {}, {}
        return state

    def __setstate__(self, state: dict) -> None:
        """A state pickled by an older version lacks the caches added since: they start empty."""
        self.__dict__.update(state)
        self.__dict__.setdefault("_appearance_cache", {})
        self.__dict__.setdefault("_past_looks", {})

    def use_transitions(self, transitions: dict[tuple[str, str], Transition]) -> None:
        """Decide from now on with these camera transitions (a topology learned while running,
        ``edge/topology/watch.py``); what was decided stands."""
        self.cfg = replace(self.cfg, transitions=transitions)
        self.rules = Rules(self.cfg)

    def _candidate_identities(self, waiting: list[TrackletSummary]) -> list[Identity]:
        """Identities worth scoring for ``waiting``: all of them, or what ``candidates`` proposes
        (in creation order, as the full list would be)."""
        proposed = self.candidates(waiting) if (self.candidates is not None and waiting) else None
        if proposed is None:
            return [i for i in self.identities.values() if not i.sealed]
        ids = set(itertools.chain.from_iterable(proposed))
        return [self.identities[g] for g in sorted(ids) if g in self.identities and not self.identities[g].sealed]

    # --- membership -------------------------------------------------------------------------
    def _found(self, s: TrackletSummary, now: float, sealed: bool = False) -> Decision:
        gid = next(self._ids)
        while gid in self.identities:  # handed over from another engine whose range this one reached
            gid = next(self._ids)
        ident = Identity(gid, now, s.last_seen, s.camera, last_box=s.last_box, sealed=sealed)
        self.identities[ident.global_id] = ident
        self._attach(s, ident, "new")
        return Decision("new", ident.global_id, s.key)

    def _attach(self, s: TrackletSummary, ident: Identity, kind: DecisionKind) -> Decision:
        self.assignment[s.key] = ident.global_id
        self._joined[s.key] = next(self._order)
        ident.members.add(s.key)
        ident.cameras.add(s.camera)
        if s.last_seen >= ident.last_seen:
            ident.last_seen, ident.last_camera, ident.last_box = s.last_seen, s.camera, s.last_box
        self._changed(ident.global_id)
        return Decision(kind, ident.global_id, s.key)

    def _detach(self, key: Key) -> Identity:
        ident = self.identities[self.assignment.pop(key)]
        ident.members.discard(key)
        self._note_idle(ident)
        self._changed(ident.global_id)
        return ident

    def _fold(self, gone_id: int, keep_id: int) -> Decision:
        keep, gone = self.identities[keep_id], self.identities.pop(gone_id)
        for key in gone.members:
            self.assignment[key] = keep_id
            keep.members.add(key)
        keep.cameras |= gone.cameras
        for camera, spans in gone.spans.items():
            keep.spans.setdefault(camera, []).extend(spans)
            del keep.spans[camera][:-MAX_SPANS]
        if gone.past is not None:
            self._fold_past(keep, gone.past, gone.past_weight, gone.past_floor, gone.last_seen)
        if gone.last_seen > keep.last_seen:
            keep.last_seen, keep.last_camera, keep.last_box = gone.last_seen, gone.last_camera, gone.last_box
        self._changed(keep_id, gone_id)
        return Decision("merged", keep_id, None, gone_id)

    def _drop_if_empty(self, gid: int) -> None:
        ident = self.identities.get(gid)
        if ident is not None and not ident.members and ident.past is None:
            del self.identities[gid]

    def _make_final(self, key: Key) -> None:
        s = self.records.pop(key)
        gid = self.assignment.pop(key, None)
        self._joined.pop(key, None)
        if gid is None:
            return
        ident = self.identities[gid]
        ident.members.discard(key)
        spans = ident.spans.setdefault(s.camera, [])
        spans.append((s.first_seen, s.last_seen))
        del spans[:-MAX_SPANS]
        if s.appearance is not None:
            self._fold_past(ident, self._look(s, s.appearance), s.weight, s.floor, s.last_seen)
            if self.centering is not None and s.n_embeddings >= self.cfg.min_embeddings:
                self.centering.add_final(s.camera, s.appearance)
        self._looks.pop(key, None)
        self._final.append((key, gid))
        self._changed(gid)
        self._note_idle(ident)

    def _note_idle(self, ident: Identity) -> None:
        """An identity without tracklets now (or one that came without): a candidate for expiry."""
        if not ident.members:
            heapq.heappush(self._idle, (ident.last_seen, ident.global_id))

    @staticmethod
    def _fold_past(
        ident: Identity, appearance: Embeddings, weight: float, floor: Optional[FloorTrack], last_seen: float
    ) -> None:
        if ident.past is None:
            ident.past, ident.past_weight = appearance, weight
        else:
            ident.past = weighted_mean(
                Embeddings.concat([ident.past, appearance]), np.array([ident.past_weight, weight])
            )
            ident.past_weight += weight
        if floor is not None and len(floor) and (ident.past_floor is None or floor.last[0] >= ident.past_floor.last[0]):
            ident.past_floor = floor

    # --- appearances ------------------------------------------------------------------------
    def _changed(self, *gids: int) -> None:
        """These identities' members or past changed: their appearances are computed again. The
        others' stay: an appearance depends only on its identity's members' looks (fixed until the
        next :meth:`_refresh_centering`) and its past, so keeping them changes no decision, and a
        revision pass that moves one tracklet no longer recomputes every look-alike's (most of its
        cost with a large gallery)."""
        for gid in gids:
            self._appearance_cache.pop(gid, None)
            self._past_looks.pop(gid, None)

    def _refresh_centering(self) -> None:
        self._appearance_cache.clear()
        self._looks.clear()
        if not self.cfg.centering:
            return
        if self.centering is None:
            first = next((s.appearance for s in self.records.values() if s.appearance is not None), None)
            if first is None:
                return
            prior = self.cfg.center_prior if self.cfg.center_prior is not None else np.zeros(first.dim, np.float32)
            if prior.shape != (first.dim,):
                raise ValueError(f"centering prior has {prior.shape[0]} values, the appearances {first.dim}")
            self.centering = CameraCentering(prior, self.cfg.center_prior_weight, self.cfg.center_prior_parts)
            if self._centering_state:
                self.centering.load(self._centering_state)
        self.centering.refresh(
            s for s in self.records.values() if s.n_embeddings >= self.cfg.min_embeddings
        )  # no flickers

    def centering_state(self) -> dict:
        """What :meth:`~edge.identity.engine.IdentityEngine.restore` needs to keep each camera's look
        (empty without centering)."""
        if self.centering is None:
            return dict(self._centering_state or {})
        return self.centering.state()

    def look(self, s: TrackletSummary) -> Optional[Embeddings]:
        """The appearance the engine compares: the tracklet's own, camera-centered when centering is on."""
        return None if s.appearance is None else self._look(s, s.appearance)

    def _look(self, s: TrackletSummary, appearance: Embeddings) -> Embeddings:
        """:meth:`look` of a tracklet with an appearance (``s.appearance``)."""
        if self.centering is None:
            return appearance
        if s.key not in self._looks:
            self._looks[s.key] = self.centering.center(appearance, s.camera)
        return self._looks[s.key]

    def appearance(self, ident: Identity, without: Optional[Key] = None) -> Optional[Embeddings]:
        """Weighted mean of the identity's tracklet appearances (and its final ones), optionally without one."""
        if self.identities.get(ident.global_id) is not ident:  # one built only to be scored: not kept
            return self._appearance_of(ident, without)
        cached = self._appearance_cache.setdefault(ident.global_id, {})
        if without not in cached and not ident.members and ident.past is not None:
            if ident.global_id not in self._past_looks:
                self._past_looks[ident.global_id] = self._mean([ident.past], [ident.past_weight])
            cached[without] = self._past_looks[ident.global_id]
        if without not in cached:
            cached[without] = self._appearance_of(ident, without)
        return cached[without]

    def _appearance_of(self, ident: Identity, without: Optional[Key]) -> Optional[Embeddings]:
        """:meth:`appearance` computed, not cached."""
        items, weights = [], []
        for key in sorted(ident.members):
            s = self.records[key]
            if key != without and s.appearance is not None:
                items.append(self._look(s, s.appearance))
                weights.append(s.weight)
        if ident.past is not None:
            items.append(ident.past)
            weights.append(ident.past_weight)
        return self._mean(items, weights) if items else None

    @staticmethod
    def _mean(items: list[Embeddings], weights: list[float]) -> Embeddings:
        """The weighted mean appearance (a weight never below 1e-3: a zero-weight look still counts)."""
        return weighted_mean(Embeddings.concat(items), np.array([max(w, 1e-3) for w in weights]))

    # --- the score (rules.py has the formula and the hard rules) -----------------------------
    def score(self, s: TrackletSummary, ident: Identity, exclude_self: bool = False) -> float:
        """How well tracklet ``s`` fits ``ident`` (>= 0: enough to join); FORBIDDEN when a hard rule says no."""
        others = [self.records[k] for k in sorted(ident.members) if k != s.key]
        transition = self.rules.time_evidence(s, ident, others)
        if transition is None:
            return FORBIDDEN
        forbidden, floor_support = self.rules.floor(s, ident, others)
        if forbidden:
            return FORBIDDEN
        app = self.appearance(ident, without=s.key if exclude_self else None)
        if app is None or s.appearance is None:
            return FORBIDDEN
        evidence = self.rules.appearance_evidence(float(similarity(self._look(s, s.appearance), app)[0, 0]))
        if evidence <= FORBIDDEN:
            return FORBIDDEN
        relink = self.cfg.relink_bonus if self.rules.relinks(s, others) else 0.0
        return evidence + relink + self.cfg.floor_weight * floor_support + self.cfg.transition_bonus * transition

    def merge_score(self, a: Identity, b: Identity) -> float:
        """How well identity ``b``'s tracklets fit ``a`` as a whole (FORBIDDEN if any cannot)."""
        app_a, app_b = self.appearance(a), self.appearance(b)
        if app_a is None or app_b is None:
            return FORBIDDEN
        floor, relink = [], 0.0
        others = [self.records[k] for k in sorted(a.members)]
        for key in sorted(b.members):
            s = self.records[key]
            if self.rules.time_evidence(s, a, others) is None:
                return FORBIDDEN
            forbidden, support = self.rules.floor(s, a, others)
            if forbidden:
                return FORBIDDEN
            floor.append(support)
            if self.rules.relinks(s, others):
                relink = self.cfg.relink_bonus
        if self.rules.spans_clash(a, b, others):  # b's final tracklets, same camera
            return FORBIDDEN
        evidence = self.rules.appearance_evidence(float(similarity(app_b, app_a)[0, 0]))
        if evidence <= FORBIDDEN:
            return FORBIDDEN
        return evidence + relink + self.cfg.floor_weight * (max(floor) if floor else 0.0)


def compared_looks(summaries: Iterable[TrackletSummary], settings: EngineSettings) -> dict[Key, Embeddings]:
    """The appearances an engine with ``settings`` would compare for these tracklets (camera-centered
    over them when the settings say so), by key; tracklets without an appearance are left out."""
    state = EngineState(settings)
    state.records = {s.key: s for s in summaries}
    state._refresh_centering()
    return {k: look for k, s in state.records.items() if (look := state.look(s)) is not None}
