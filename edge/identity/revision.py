"""The revision: decisions stay provisional while their tracklets are within ``revision_window_s``.

Every ``revise_every_s`` the engine (``engine.py``) runs one pass, in this order:

1. split off a tracklet that its own identity now forbids (a lost track came back beside its
   successor: one camera sees the identity twice): ``reassigned``, to another identity or a new one;
2. move a tracklet whose identity fits it worse than another one does by ``reassign_margin``
   (the newest decision is doubted first): ``reassigned``;
3. merge two identities whose tracklets fit each other by ``merge_margin`` (best pair first):
   ``merged``;
4. give an identity back to the person a look-alike took it from (:meth:`Revision._reclaim`):
   ``reassigned`` then ``merged``;
5. fold a sealed identity (a fragment too short to match) into the one identity whose tracklet
   picks up where the fragment ended in its camera (:meth:`Revision._absorb_sealed`): ``merged``.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace
from typing import Optional

from core.embeddings import Embeddings, similarity
from edge.identity.records import Decision, Identity, Key, TrackletSummary
from edge.identity.rules import FORBIDDEN
from edge.identity.state import EngineState

log = logging.getLogger("edge.identity.engine")  # the engine's logger, as before the split

SHORT_VETO = 2.0  # scale units below the threshold at which a short fragment's look refuses a continuation


class Revision(EngineState):
    """The revision pass over an :class:`~edge.identity.state.EngineState`."""

    def _revise(self, now: float) -> list[Decision]:
        out = self._resolve_conflicts(now)
        out += self._reassign(now)
        out += self._merge()
        out += self._reclaim(now)
        out += self._absorb_sealed()
        return out

    def _resolve_conflicts(self, now: float) -> list[Decision]:
        """A tracklet that its own identity forbids (e.g. a lost track came back beside its successor)."""
        out = []
        for ident in list(self.identities.values()):
            if len(ident.members) < 2:
                continue
            for key in sorted(ident.members, key=lambda k: (self.records[k].weight, k)):
                if key in ident.members and len(ident.members) > 1 and self._conflicts(key, ident):
                    out.append(self._move(key, now, allow_new=True))
        return [d for d in out if d is not None]

    def _conflicts(self, key: Key, ident: Identity) -> bool:
        """Whether ``key`` may not stay in ``ident``. Without appearance on one side (a fragment that
        joined by continuing a track in its camera, or the track it continued) only the hard rules
        can say so: a missing look is no evidence against."""
        s = self.records[key]
        if s.appearance is None or self.appearance(ident, without=key) is None:
            others = [self.records[k] for k in sorted(ident.members) if k != key]
            return self.rules.time_evidence(s, ident, others) is None or self.rules.floor(s, ident, others)[0]
        return self.score(s, ident, True) <= FORBIDDEN

    def _reassign(self, now: float) -> list[Decision]:
        out = []
        for key in sorted(self.assignment, key=lambda k: -self._joined[k]):  # the newest decision is doubted first
            if key not in self.assignment:
                continue
            s = self.records.get(key)
            ident = self.identities[self.assignment[key]]
            if s is None or s.appearance is None or len(ident.members) + (ident.past is not None) < 2:
                continue
            if self.appearance(ident, without=key) is None:  # its other members have no look to doubt it by
                continue
            own = self.score(s, ident, exclude_self=True)  # another identity must beat it by the margin
            d = self._move(key, now, allow_new=own < -2 * self.cfg.reassign_margin, beat=own + self.cfg.reassign_margin)
            if d is not None:
                out.append(d)
        return out

    def _move(self, key: Key, now: float, allow_new: bool, beat: float = 0.0) -> Optional[Decision]:
        """Move ``key`` to the identity it fits best (scoring above ``beat`` and 0), or to a new one."""
        s = self.records[key]
        old = self.assignment[key]
        best_score, best = FORBIDDEN, None
        others = [i for i in self._candidate_identities([s]) if i.global_id != old]
        for ident in self._within_reach(s, others, max(beat, 0.0)):
            sc = self.score(s, ident)
            if sc > best_score:
                best_score, best = sc, ident
        if best is not None and best_score >= max(beat, 0.0):
            self._detach(key)
            self._attach(s, best, "assigned")
        elif allow_new:
            self._detach(key)
            best = self.identities[self._found(s, now).global_id]
        else:
            return None
        self._drop_if_empty(old)
        return Decision("reassigned", best.global_id, key, old)

    def _within_reach(self, s: TrackletSummary, idents: list[Identity], need: float) -> list[Identity]:
        """The identities whose score for ``s`` could reach ``need``: appearance (one batched
        similarity) plus the most the other evidence can add. Scoring only those keeps the
        revision pass near (live tracklets x look-alikes) instead of (live tracklets x gallery),
        with the same decisions."""
        looks: list[tuple[Identity, Embeddings]] = []
        for i in idents:
            app = self.appearance(i)
            if app is not None:
                looks.append((i, app))
        if not looks or s.appearance is None:
            return []
        cos = similarity(self._look(s, s.appearance), Embeddings.concat([a for _, a in looks]))[0]
        most = self.cfg.relink_bonus + self.cfg.floor_weight + self.cfg.transition_bonus
        reach = (cos - self.cfg.threshold) / self.cfg.scale + most
        return [i for (i, _), r in zip(looks, reach) if r >= need - 1e-9]

    def _merge(self) -> list[Decision]:
        out: list[Decision] = []
        while True:
            pair = self._best_merge()
            if pair is None:
                return out
            keep, gone = pair
            out.append(self._fold(gone, keep))

    def _best_merge(self) -> Optional[tuple[int, int]]:
        active = sorted(i.global_id for i in self.identities.values() if i.members and not i.sealed)
        best, best_score = None, self.cfg.merge_margin
        for a, b in itertools.combinations(active, 2):
            sc = self.merge_score(self.identities[a], self.identities[b])
            if sc >= best_score:
                best, best_score = (a, b), sc
        return best

    def _reclaim(self, now: float) -> list[Decision]:
        """Give a person back the identity a look-alike took first.

        A look-alike's tracklet can join a person's identity while the person is out of view (the
        time window of a corridor lets both in). When the person's own tracklet then arrives, the
        look-alike's blocks it (:meth:`~edge.identity.rules.Rules.conflict`), so it founds a new
        identity, and no single move or merge can undo the pair. Here identity B folds into A once
        A's *blocking* live tracklets leave for an identity of their own, when B fits the rest of A
        better than they did by ``reassign_margin``."""
        out: list[Decision] = []
        for _ in range(len(self.identities)):  # each gain is strict, so this bound is only a guard
            best = self._best_reclaim()
            if best is None:
                break
            keep, gone, evicted = best
            log.debug("reclaim: %s leave %d so that %d folds into it", sorted(evicted), keep, gone)
            first, *rest = sorted(evicted, key=lambda k: (self.records[k].first_seen, k))
            self._detach(first)
            home = self.identities[self._found(self.records[first], now).global_id]
            out.append(Decision("reassigned", home.global_id, first, keep))
            for key in rest:
                self._detach(key)
                self._attach(self.records[key], home, "reassigned")
                out.append(Decision("reassigned", home.global_id, key, keep))
            out.append(self._fold(gone, keep))
        return out

    def _best_reclaim(self) -> Optional[tuple[int, int, set[Key]]]:
        """(identity kept, identity folded into it, the kept one's tracklets that must leave) with
        the largest gain of at least ``reassign_margin``, or None. Only pairs of identities with
        conflicting live tracklets are scored (each pair of live tracklets is checked once)."""
        owner = {k: g for g, i in self.identities.items() if i.members and not i.sealed for k in i.members}
        blocking: dict[tuple[int, int], set[Key]] = {}
        for x, y in itertools.combinations(sorted(owner), 2):
            a, b = owner[x], owner[y]
            if a != b and self.rules.conflict(self.records[x], self.records[y]):
                blocking.setdefault((a, b), set()).add(x)
                blocking.setdefault((b, a), set()).add(y)
        best, best_gain = None, self.cfg.reassign_margin
        for (a, b), keys in sorted(blocking.items()):
            ident_a, ident_b = self.identities[a], self.identities[b]
            if keys == ident_a.members and ident_a.past is None:
                continue
            rest = replace(ident_a, global_id=next(self._scratch_ids), members=ident_a.members - keys)
            fit_b = self.merge_score(rest, ident_b)
            if fit_b < self.cfg.merge_margin:
                continue
            group = Identity(
                next(self._scratch_ids), ident_a.created, ident_a.last_seen, ident_a.last_camera, members=keys
            )
            gain = fit_b - max(self.merge_score(rest, group), 0.0)
            if gain >= best_gain:
                best, best_gain = (a, b, keys), gain
        return best

    # --- short fragments and the track that follows them -----------------------------------
    def _absorb_sealed(self) -> list[Decision]:
        """A fragment too short to match founded a sealed identity; when the person's next track
        in that camera (picking up where the fragment ended, ``Rules.continues``) has joined an
        identity, the fragment is that person too. The engine's assignment only looks backwards
        (a fragment joins the track it continues, :meth:`~edge.identity.engine.IdentityEngine.
        _continued_identity`); this looks forwards. One continuing identity only, and no hard rule
        or clearly different look against it."""
        out: list[Decision] = []
        owner = {k: g for g, i in self.identities.items() if not i.sealed for k in i.members}
        for gid in sorted(g for g, i in self.identities.items() if i.sealed and i.members):
            sealed = self.identities[gid]
            pieces = [self.records[k] for k in sorted(sealed.members)]
            heirs = {owner[k] for k in owner if any(self.rules.continues(self.records[k], p) for p in pieces)}
            if len(heirs) != 1:
                continue
            heir = self.identities[next(iter(heirs))]
            if any(self._refuses(p, heir) for p in pieces) or self.rules.spans_clash(
                heir, sealed, [self.records[k] for k in sorted(heir.members)]
            ):
                continue
            out.append(self._fold(gid, heir.global_id))
            owner.update({p.key: heir.global_id for p in pieces})
        return out

    def _refuses(self, s: TrackletSummary, ident: Identity) -> bool:
        """Whether a hard rule or a clearly different look keeps fragment ``s`` out of ``ident``."""
        others = [self.records[k] for k in sorted(ident.members) if k != s.key]
        if self.rules.time_evidence(s, ident, others) is None or self.rules.floor(s, ident, others)[0]:
            return True
        return self._looks_unlike(s, ident)

    def _looks_unlike(self, s: TrackletSummary, ident: Identity) -> bool:
        """The fragment's one or two crops are too few to match by, but enough to refuse: clearly
        another person (more than SHORT_VETO scale units below the threshold) stepping in where
        somebody left does not take their identity."""
        app = self.appearance(ident)
        if s.appearance is None or app is None:
            return False
        cos = float(similarity(self._look(s, s.appearance), app)[0, 0])
        return (cos - self.cfg.threshold) / self.cfg.scale < -SHORT_VETO
