"""The identity engine: tracklet summaries in, identity decisions out. No I/O, no threads.

A tracklet that has gathered ``min_embeddings`` crops (or ended) is *waiting*: each
:meth:`IdentityEngine.update` assigns the waiting ones to the identities they fit best (one
tracklet per identity and round, Hungarian assignment on the score), joins the rest to an identity
of the same round they fit, and founds a new identity for each that fits none. A tracklet that
ended too short to match joins the one identity whose tracklet it continues in the same camera (a
tracker break), else founds a *sealed* identity that nothing joins.

The score and the hard rules that forbid a pair outright are in ``rules.py`` (the formula in its
docstring); appearances are compared camera-centered when the model carries centered statistics
(``centering.py``); the state and the steps that change it are in ``state.py``.

Decisions are provisional for ``revision_window_s``: every ``revise_every_s`` the revision
(``revision.py``) merges two identities whose tracklets fit each other (``merged``), moves a
tracklet whose identity fits it worse than another one, or splits off one that conflicts with its
identity (``reassigned``), and gives an identity back to the person a look-alike took it from
(``reassigned`` then ``merged``). Tracklets that ended before the window are *final*: folded into
their identity's summary and reported by :meth:`IdentityEngine.take_final`, never to change again.
Memory and cost are bounded by the window, ``max_identities`` and the identities' time to live.

Same inputs, same decisions: everything runs on the scene clock the caller passes in.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any, Optional

import numpy as np
from scipy.optimize import linear_sum_assignment

from edge.identity.records import Decision, Identity, Key, TrackletSummary
from edge.identity.revision import Revision
from edge.identity.rules import FORBIDDEN
from edge.identity.settings import EngineSettings, settings_from_config
from edge.identity.state import Candidates, Count

# Importable from here as before the split (callers use edge.identity.engine for these names).
__all__ = [
    "FORBIDDEN",
    "Candidates",
    "EngineSettings",
    "Identity",
    "IdentityEngine",
    "cluster_offline",
    "settings_from_config",
]


class IdentityEngine(Revision):
    """Cross-camera identities from tracklet summaries: when to assign, revise, finalise and expire
    (the module docstring); the rules are ``rules.py``'s, the steps ``state.py``'s and ``revision.py``'s.

    Satisfies :class:`~edge.identity.service.IdentityService` (what the edge pipeline calls)."""

    def __init__(self, settings: EngineSettings, candidates: Optional[Candidates] = None):
        """``candidates``: which identities to score (see :class:`~edge.identity.state.EngineState`)."""
        super().__init__(settings, candidates)
        self._last_revision = -np.inf

    # --- the one entry point ----------------------------------------------------------------
    def update(self, summaries: Iterable[TrackletSummary], now: float) -> list[Decision]:
        """Take the tracklets that changed (new evidence, ended) and return what changed."""
        for s in summaries:
            self.records[s.key] = s
        self._refresh_centering()
        out = self._assign_waiting(now)
        if self.cfg.enabled and now - self._last_revision >= self.cfg.revise_every_s:
            self._last_revision = now
            out += self._revise(now)
        self._refresh(out)
        self._finalise(now)
        out += self._expire(now)
        return out

    def flush(self, now: Optional[float] = None) -> list[Decision]:
        """End of the run: with ``now``, one last revision with everything known (no more evidence
        will come), then every tracklet is final. Call after the last :meth:`update`."""
        out: list[Decision] = []
        if now is not None and self.cfg.enabled and self.records:
            self._refresh_centering()
            out = self._revise(now)
            self._refresh(out)
        for key in list(self.records):
            self._make_final(key)
        return out

    def settle(self, now: float, max_rounds: int = 50) -> list[Decision]:
        """Revise until nothing changes (offline clustering of a whole run's tracklets)."""
        out: list[Decision] = []
        for _ in range(max_rounds):
            changed = self._revise(now)
            if not changed:
                break
            out += changed
        self._refresh(out)
        return out

    def finalise(self, keys: Iterable[Key]) -> None:
        """Make these ended tracklets final now, without waiting for the revision window (their
        node said it stops: no evidence about them will come); reported by :meth:`take_final`."""
        for key in keys:
            s = self.records.get(key)
            if s is not None and s.ended:
                self._make_final(key)

    def take_final(self) -> list[tuple[Key, int]]:
        """Tracklets whose identity will not change any more, since the last call."""
        out, self._final = self._final, []
        return out

    def global_id(self, key: Key) -> Optional[int]:
        return self.assignment.get(key)

    # --- the rest of the service the pipeline sees (service.py): nothing to do on a single box --
    def is_provisional(self, gid: int) -> bool:
        """Never: this engine's ids are the only ids (a site node's may be provisional)."""
        return False

    def report(self) -> dict[str, Any]:
        """Nothing beyond the gallery size the run report already shows (a site node reports its link)."""
        return {}

    def reading(self) -> AbstractContextManager[Any]:
        """Nothing to hold: only the caller's thread changes this engine."""
        return nullcontext()

    def close(self) -> None:
        """Nothing to release: no link, no thread (a site node closes its link to the hub)."""

    # --- assignment of waiting tracklets ----------------------------------------------------
    def _ready(self, s: TrackletSummary) -> bool:
        return s.key not in self.assignment and (s.ended or s.n_embeddings >= self.cfg.min_embeddings)

    def _assign_waiting(self, now: float) -> list[Decision]:
        waiting = sorted((s for s in self.records.values() if self._ready(s)), key=lambda s: (s.first_seen, s.key))
        if not waiting:
            return []
        out = []
        if not self.cfg.enabled:
            return [self._found(s, now) for s in waiting]
        # no appearance, or ended before min_embeddings crops (a flicker, a false detection): an
        # identity of its own that nothing joins, so its one noisy look or its time span cannot
        # pull others in or block a merge
        short = [s for s in waiting if s.appearance is None or s.n_embeddings < self.cfg.min_embeddings]
        waiting = [s for s in waiting if s.appearance is not None and s.n_embeddings >= self.cfg.min_embeddings]
        for s in short:
            continued = self._continued_identity(s)
            out.append(self._attach(s, continued, "assigned") if continued else self._found(s, now, sealed=True))
        idents = self._candidate_identities(waiting)
        matched: set[int] = set()
        joined: list[Identity] = []  # identities that took a tracklet in this round
        if waiting and idents:
            score = np.array([[self.score(s, ident) for ident in idents] for s in waiting])
            rows, cols = linear_sum_assignment(-score)
            for r, c in zip(rows, cols):
                if score[r, c] >= 0.0:
                    out.append(self._attach(waiting[r], idents[c], "assigned"))
                    matched.add(r)
                    joined.append(idents[c])
        # one identity takes one tracklet per round, so the same person's tracklet in an overlapping
        # view (waiting in the same round) may still join an identity matched or founded just now
        founded: list[Identity] = []
        for r, s in enumerate(waiting):
            if r in matched:
                continue
            scores = [(self.score(s, ident), ident.global_id) for ident in (*joined, *founded)]
            best = max(scores, default=(FORBIDDEN, 0))
            if best[0] >= 0.0:
                out.append(self._attach(s, self.identities[best[1]], "assigned"))
            else:
                out.append(self._found(s, now))
                founded.append(self.identities[out[-1].global_id])
        return out

    def _continued_identity(self, s: TrackletSummary) -> Optional[Identity]:
        """The one identity whose tracklet ``s`` picks up in the same camera (a tracker break: it
        started where and soon after that one was last seen, ``Rules.continues``) and no hard rule
        forbids, or None. A fragment too short to match by appearance joins by that geometry alone:
        when the box can't keep up, the tracker loses people often and the pieces are short."""
        found = []
        for ident in self.identities.values():
            others = [self.records[k] for k in sorted(ident.members) if k in self.records]
            if not any(self.rules.continues(s, o) for o in others):
                continue
            if not self._refuses(s, ident):
                found.append(ident)
        return found[0] if len(found) == 1 else None

    # --- restoring a persisted state (site hub restart) --------------------------------------
    def restore(self, identities: Iterable[Identity], next_id: int, centering: Optional[dict] = None) -> None:
        """Start from identities kept elsewhere (their final tracklets' summary) and, with camera
        centering, each camera's look (:meth:`centering_state`), before any update."""
        if self.identities or self.records:
            raise RuntimeError("restore() needs a fresh engine")
        self._centering_state = centering or None
        for ident in sorted(identities, key=lambda i: i.global_id):
            ident.members = set()
            self.identities[ident.global_id] = ident
            self._note_idle(ident)
        self._ids = Count(max([next_id, *(i + 1 for i in self.identities)]))
        self._first_id = self._ids.value

    def welcome(self, ident: Identity) -> bool:
        """A person another engine handed over (a neighbouring region's hub, ``edge/stream/handover.py``):
        an identity without tracklets here, as last seen there, that this engine's tracklets can
        join (through the transitions from its last camera). One already here (a second hand-over)
        takes the newer sighting and folds the appearance in. False when ``ident``'s id is one this
        engine founded itself (id ranges that overlap): refused."""
        have = self.identities.get(ident.global_id)
        if have is None:
            if self._first_id <= ident.global_id < self._ids.value:
                return False
            self._welcomed.add(ident.global_id)
            # its own containers: the engine adds to an identity's spans and cameras in place
            self.identities[ident.global_id] = replace(
                ident, members=set(), cameras=set(ident.cameras), spans={c: list(v) for c, v in ident.spans.items()}
            )
            self._note_idle(self.identities[ident.global_id])
            self._changed(ident.global_id)
            return True
        if ident.global_id not in self._welcomed:
            return False
        have.cameras |= ident.cameras
        if ident.past is not None:
            self._fold_past(have, ident.past, ident.past_weight, ident.past_floor, ident.last_seen)
        if ident.last_seen > have.last_seen:
            have.last_seen, have.last_camera, have.last_box = ident.last_seen, ident.last_camera, ident.last_box
            self._note_idle(have)
        self._changed(ident.global_id)
        return True

    def adopt(self, s: TrackletSummary, global_id: int) -> Optional[Decision]:
        """Attach a tracklet the site was already told belongs to ``global_id`` (after a restart);
        None when that identity is gone (the tracklet is then matched like any other)."""
        ident = self.identities.get(global_id)
        if ident is None or s.key in self.assignment:
            return None
        self.records[s.key] = s
        self._refresh_centering()
        return self._attach(s, ident, "assigned")

    # --- finality and expiry ----------------------------------------------------------------
    def _finalise(self, now: float) -> None:
        horizon = now - self.cfg.revision_window_s
        for key in [k for k, s in self.records.items() if s.ended and s.last_seen < horizon]:
            self._make_final(key)

    def _expire(self, now: float) -> list[Decision]:
        """Identities without tracklets unseen for the time to live, and past ``max_identities`` the
        longest unseen of the others: forgotten. Reads the idle heap, oldest first, so a step costs
        what expires, not the gallery's size."""
        gone = self._pop_idle(lambda last: now - last > self.cfg.identity_ttl_s)
        extra = len(self.identities) - self.cfg.max_identities
        if extra > 0:  # over the gallery bound: forget the longest unseen first
            gone += self._pop_idle(lambda last: True, extra)
        return [Decision("expired", i.global_id, cameras=tuple(sorted(i.cameras))) for i in gone]

    def _pop_idle(self, due: Callable[[float], bool], most: Optional[int] = None) -> list[Identity]:
        """Remove and return idle identities, oldest sighting first, while ``due`` says so (up to ``most``)."""
        gone: list[Identity] = []
        while self._idle and (most is None or len(gone) < most) and due(self._idle[0][0]):
            last, gid = heapq.heappop(self._idle)
            ident = self.identities.get(gid)
            if ident is None or ident.members:
                continue  # gone already, or back in use (it is pushed again when idle)
            if ident.last_seen != last:
                heapq.heappush(self._idle, (ident.last_seen, gid))  # seen since: where it belongs now
                continue
            del self.identities[gid]
            self._changed(gid)
            gone.append(ident)
        return gone

    def _refresh(self, decisions: list[Decision]) -> None:
        """Keep each touched identity's last seen time and event embedding current."""
        touched = {d.global_id for d in decisions} | {self.assignment[k] for k in self.assignment}
        for gid in touched:
            ident = self.identities.get(gid)
            if ident is None:
                continue
            for key in sorted(ident.members):
                s = self.records[key]
                if s.last_seen > ident.last_seen:
                    ident.last_seen, ident.last_camera, ident.last_box = s.last_seen, s.camera, s.last_box
            app = self.appearance(ident)
            ident.embedding = None if app is None else app.global_[0]


def cluster_offline(summaries: list[TrackletSummary], settings: EngineSettings) -> dict[Key, int]:
    """All of a run's tracklets clustered at once under the same rules: what online decisions
    would give with hindsight (an upper bound to compare the online engine with)."""
    if not summaries:
        return {}
    engine = IdentityEngine(replace(settings, revision_window_s=float("inf")))
    end = max(s.last_seen for s in summaries)
    engine.update([replace(s, ended=True) for s in summaries], end)
    engine.settle(end)
    return dict(engine.assignment)
