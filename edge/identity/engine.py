"""The identity engine: tracklet summaries in, identity decisions out. No I/O, no threads.

One score says how well a tracklet fits an identity, in units of the ReID model's different-person
cosine spread (the standard deviation of its different-person similarities), so that appearance
and the other evidence add up::

    score = (cos(tracklet, identity) - threshold) / scale
            + relink_bonus   if the tracklet continues one of the identity's tracklets of the same
                             camera (it started shortly after that one was last seen, near it)
            + floor_weight * floor support   (same place at the same time in overlapping views)
            + transition_bonus * (+1 through a declared transition's doors, -1 in its window but
                                  not through them; topology.py)

and hard rules forbid a pair outright: one camera never sees one identity twice at the same
observed time (a member with less than ``WEAKER`` of the newcomer's evidence, most often a
tracker-swap fragment, does not block; the revision moves it out instead); a transition window is
not met, or two cameras a transition joins would have seen the identity closer in time than the
walk takes; two tracklets stand far apart on the floor at the same time, or one would have had to
walk faster than a person walks. ``cos`` compares
camera-centered appearances when the model carries centered statistics (``centering.py``), and a
tracklet that ended too short to match founds a *sealed* identity that nothing joins.

Decisions are provisional for ``revision_window_s``: every ``revise_every_s`` the engine merges two
identities whose tracklets fit each other (``merged``), moves a tracklet whose identity fits it
worse than another one, or splits off one that conflicts with its identity (``reassigned``), and
gives an identity back to the person a look-alike took it from (``reassigned`` then ``merged``).
Tracklets that ended before the window are *final*: folded into their identity's summary and
reported by :meth:`IdentityEngine.take_final`, never to change again. Memory and cost are bounded
by the window, ``max_identities`` and the identities' time to live.

Same inputs, same decisions: everything runs on the scene clock the caller passes in.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.embeddings import Embeddings, similarity, weighted_mean
from edge.identity.centering import CameraCentering
from edge.identity.geometry import FloorRules, FloorTrack, floor_evidence, foot_point
from edge.identity.records import Decision, Key, TrackletSummary
from edge.identity.topology import Transition

log = logging.getLogger(__name__)

FORBIDDEN = -1e9
MAX_SPANS = 8  # final tracklets' time spans remembered per identity and camera
WEAKER = 0.5  # a same-time tracklet with less than this share of the evidence does not block: it is moved out
HANDOVER_S = 0.25  # a tracker break can show old and new track together this long, at the same place


@dataclass(frozen=True)
class EngineSettings:
    """Everything the engine decides with (see :class:`edge.runtime.config.MatchingConfig` for each)."""

    threshold: float
    scale: float = 0.1
    enabled: bool = True
    min_embeddings: int = 2
    identity_ttl_s: float = 300.0
    max_identities: int = 10000
    revision_window_s: float = 30.0
    revise_every_s: float = 1.0
    relink_max_gap_s: float = 2.0
    relink_bonus: float = 1.0
    floor_weight: float = 2.0
    transition_bonus: float = 1.0
    appearance_veto: Optional[float] = None  # appearance this many scale units below the threshold forbids a pair
    merge_margin: float = 0.5
    reassign_margin: float = 1.0
    transitions: dict[tuple[str, str], Transition] = field(default_factory=dict)
    floor: FloorRules = field(default_factory=FloorRules)
    centering: bool = False  # compare appearances with each camera's mean look taken out (centering.py)
    center_prior: Optional[np.ndarray] = None  # the model's mean tracklet appearance (None: zeros)
    center_prior_parts: Optional[np.ndarray] = None
    center_prior_weight: float = 3.0


def settings_from_config(
    cfg, model_similarity: Optional[dict], model_name: str = "the ReID model", embedding_dim: Optional[int] = None
) -> EngineSettings:
    """Engine settings from ``matching`` (an :class:`edge.runtime.config.MatchingConfig`) and the model's stored
    similarity statistics. The threshold is the config's, else the model's; neither is an error.

    Camera centering is on when the model carries centered statistics (``similarity.centered``)
    and no threshold is configured, unless ``matching.centering`` says otherwise; its threshold
    and scale are then the centered ones, since centered cosines live on another scale."""
    stats = model_similarity or {}
    centering = cfg.centering if cfg.centering is not None else ("centered" in stats and cfg.threshold is None)
    if centering and cfg.enabled:
        if "centered" not in stats and cfg.threshold is None:
            raise ValueError(
                f"{model_name} has no centered similarity statistics: set matching.threshold for centered "
                "appearances, or matching.centering: false (or store them: python -m export similarity)"
            )
        stats = stats.get("centered", {})
    threshold = cfg.threshold if cfg.threshold is not None else stats.get("threshold")
    if threshold is None and cfg.enabled:
        raise ValueError(
            f"{model_name} has no stored matching threshold (third-party or older export): set matching.threshold"
        )
    prior = _array((model_similarity or {}).get("mean")) if centering else None
    if prior is not None and (prior.ndim != 1 or (embedding_dim and prior.size != embedding_dim)):
        raise ValueError(f"{model_name}: similarity.mean has {prior.size} values, its embeddings {embedding_dim}")
    scale = cfg.scale
    if scale is None:  # one unit of evidence = one standard deviation of different-person cosines
        scale = float(stats["diff_std"]) if stats.get("diff_std", 0) > 0 else 0.1
    return EngineSettings(
        threshold=float(threshold if threshold is not None else 1.0),
        scale=scale,
        enabled=cfg.enabled,
        min_embeddings=cfg.min_embeddings,
        identity_ttl_s=cfg.identity_ttl_s,
        max_identities=cfg.max_identities,
        revision_window_s=cfg.revision_window_s,
        revise_every_s=cfg.revise_every_s,
        relink_max_gap_s=cfg.relink_max_gap_s,
        relink_bonus=cfg.relink_bonus,
        floor_weight=cfg.floor_weight,
        transition_bonus=cfg.transition_bonus,
        appearance_veto=cfg.appearance_veto,
        merge_margin=cfg.merge_margin,
        reassign_margin=cfg.reassign_margin,
        transitions={(t.src, t.dst): Transition.build(t.min_s, t.max_s, t.exit, t.entry) for t in cfg.transitions},
        floor=FloorRules(near_m=cfg.same_place_m, far_m=cfg.different_place_m, max_speed_mps=cfg.max_speed_mps),
        centering=bool(centering and cfg.enabled),
        center_prior=prior,
        center_prior_parts=_array((model_similarity or {}).get("part_mean")),
        center_prior_weight=cfg.centering_prior_weight,
    )


def _array(values) -> Optional[np.ndarray]:
    return None if values is None else np.asarray(values, np.float32)


@dataclass
class Identity:
    """One person: the tracklets still under revision (``members``) and a summary of the final ones."""

    global_id: int
    created: float
    last_seen: float
    last_camera: str
    cameras: set[str] = field(default_factory=set)
    last_box: Optional[np.ndarray] = None  # xyxy where it was last seen, in last_camera's image
    members: set[Key] = field(default_factory=set)
    spans: dict[str, list[tuple[float, float]]] = field(
        default_factory=dict
    )  # final tracklets' (first, last) per camera
    past: Optional[Embeddings] = None  # appearance of the final tracklets
    past_weight: float = 0.0
    past_floor: Optional[FloorTrack] = None  # floor track of the latest final tracklet
    embedding: Optional[np.ndarray] = None  # global appearance [D], refreshed on every change (events carry it)
    sealed: bool = False  # founded by a tracklet too short to match: nothing joins or merges into it


Candidates = Callable[[list[TrackletSummary]], Optional[list[Iterable[int]]]]


class IdentityEngine:
    """Cross-camera identities from tracklet summaries. See the module docstring for the rules."""

    def __init__(self, settings: EngineSettings, candidates: Optional[Candidates] = None):
        """``candidates``: optional nearest-identity search (a site hub's FAISS gallery): given
        tracklets, the global ids worth scoring for each, or None for "every identity". Without it
        every identity is scored (the single-box runtime)."""
        self.cfg = settings
        self.candidates = candidates
        self.identities: dict[int, Identity] = {}
        self.records: dict[Key, TrackletSummary] = {}
        self.assignment: dict[Key, int] = {}
        self._joined: dict[Key, int] = {}  # when each tracklet joined its identity (newest is doubted first)
        self._order = itertools.count()
        self._scratch_ids = itertools.count(-1, -1)  # ids of identities built only to be scored
        self._ids = itertools.count(1)
        self._final: list[tuple[Key, int]] = []
        self._last_revision = -np.inf
        self._appearance_cache: dict[tuple[int, Optional[Key]], Optional[Embeddings]] = {}
        self.centering: Optional[CameraCentering] = None  # built at the first appearance (its size)
        self._centering_state: Optional[dict] = None  # restored, applied when centering is built
        self._looks: dict[Key, Embeddings] = {}

    def __len__(self) -> int:
        return len(self.identities)

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
        out += [self._found(s, now, sealed=True) for s in short]
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

    def _candidate_identities(self, waiting: list[TrackletSummary]) -> list[Identity]:
        """Identities worth scoring for ``waiting``: all of them, or what ``candidates`` proposes
        (in creation order, as the full list would be)."""
        proposed = self.candidates(waiting) if (self.candidates is not None and waiting) else None
        if proposed is None:
            return [i for i in self.identities.values() if not i.sealed]
        ids = set(itertools.chain.from_iterable(proposed))
        return [self.identities[g] for g in sorted(ids) if g in self.identities and not self.identities[g].sealed]

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
        self._ids = itertools.count(max([next_id, *(i + 1 for i in self.identities)]))

    def adopt(self, s: TrackletSummary, global_id: int) -> Optional[Decision]:
        """Attach a tracklet the site was already told belongs to ``global_id`` (after a restart);
        None when that identity is gone (the tracklet is then matched like any other)."""
        ident = self.identities.get(global_id)
        if ident is None or s.key in self.assignment:
            return None
        self.records[s.key] = s
        self._refresh_centering()
        return self._attach(s, ident, "assigned")

    def _found(self, s: TrackletSummary, now: float, sealed: bool = False) -> Decision:
        ident = Identity(next(self._ids), now, s.last_seen, s.camera, last_box=s.last_box, sealed=sealed)
        self.identities[ident.global_id] = ident
        self._attach(s, ident, "new")
        return Decision("new", ident.global_id, s.key)

    def _attach(self, s: TrackletSummary, ident: Identity, kind: str) -> Decision:
        self.assignment[s.key] = ident.global_id
        self._joined[s.key] = next(self._order)
        ident.members.add(s.key)
        ident.cameras.add(s.camera)
        if s.last_seen >= ident.last_seen:
            ident.last_seen, ident.last_camera, ident.last_box = s.last_seen, s.camera, s.last_box
        self._appearance_cache.clear()
        return Decision(kind, ident.global_id, s.key)

    def _detach(self, key: Key) -> Identity:
        ident = self.identities[self.assignment.pop(key)]
        ident.members.discard(key)
        self._appearance_cache.clear()
        return ident

    # --- the score --------------------------------------------------------------------------
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
        """What :meth:`restore` needs to keep each camera's look (empty without centering)."""
        if self.centering is None:
            return dict(self._centering_state or {})
        return self.centering.state()

    def look(self, s: TrackletSummary) -> Optional[Embeddings]:
        """The appearance the engine compares: the tracklet's own, camera-centered when centering is on."""
        if s.appearance is None or self.centering is None:
            return s.appearance
        if s.key not in self._looks:
            self._looks[s.key] = self.centering.center(s.appearance, s.camera)
        return self._looks[s.key]

    def appearance(self, ident: Identity, without: Optional[Key] = None) -> Optional[Embeddings]:
        """Weighted mean of the identity's tracklet appearances (and its final ones), optionally without one."""
        cache_key = (ident.global_id, without)
        if cache_key not in self._appearance_cache:
            items, weights = [], []
            for key in ident.members:
                s = self.records[key]
                if key != without and s.appearance is not None:
                    items.append(self.look(s))
                    weights.append(max(s.weight, 1e-3))
            if ident.past is not None:
                items.append(ident.past)
                weights.append(max(ident.past_weight, 1e-3))
            self._appearance_cache[cache_key] = (
                weighted_mean(Embeddings.concat(items), np.array(weights)) if items else None
            )
        return self._appearance_cache[cache_key]

    def score(self, s: TrackletSummary, ident: Identity, exclude_self: bool = False) -> float:
        """How well tracklet ``s`` fits ``ident`` (>= 0: enough to join); FORBIDDEN when a hard rule says no."""
        others = [self.records[k] for k in ident.members if k != s.key]
        transition = self._time_evidence(s, ident, others)
        if transition is None:
            return FORBIDDEN
        forbidden, floor_support = self._floor(s, ident, others)
        if forbidden:
            return FORBIDDEN
        app = self.appearance(ident, without=s.key if exclude_self else None)
        if app is None or s.appearance is None:
            return FORBIDDEN
        evidence = self._appearance_evidence(float(similarity(self.look(s), app)[0, 0]))
        if evidence <= FORBIDDEN:
            return FORBIDDEN
        relink = self.cfg.relink_bonus if any(self._continues(s, o) or self._continues(o, s) for o in others) else 0.0
        return evidence + relink + self.cfg.floor_weight * floor_support + self.cfg.transition_bonus * transition

    def _appearance_evidence(self, cos: float) -> float:
        """``(cos - threshold) / scale``; FORBIDDEN below ``-appearance_veto``: no floor or continuity
        evidence makes two clearly different-looking people one (a tracker's identity switch or a
        hand-over to a bystander would otherwise carry a person's id onto someone else)."""
        evidence = (cos - self.cfg.threshold) / self.cfg.scale
        veto = self.cfg.appearance_veto
        return FORBIDDEN if veto is not None and evidence < -veto else evidence

    def _time_evidence(self, s: TrackletSummary, ident: Identity, others: list[TrackletSummary]) -> Optional[float]:
        """None when time forbids ``s`` in ``ident``; else the transition support: 1 when ``s`` arrived
        by a declared transition from the identity's last sighting (within its time window and,
        where it names doors, leaving and coming in through them), -1 when within the window but
        not through the doors (a detector can miss somebody at a door, so this is evidence, not a
        rule), 0 without a declared transition."""
        for o in others:
            if (
                o.camera == s.camera
                and _overlap(o.first_seen, o.last_seen, s.first_seen, s.last_seen)
                and not (self._continues(s, o) or self._continues(o, s))
                and o.weight >= WEAKER * s.weight
            ):
                return None  # one camera saw both at once (beyond a tracker's hand-over): two people
        if any(_overlap(f, last, s.first_seen, s.last_seen) for f, last in ident.spans.get(s.camera, ())):
            return None
        if not self.cfg.transitions:
            return 0.0
        if any(self._too_soon(o.camera, o.first_seen, o.last_seen, s) for o in others) or any(
            self._too_soon(camera, f, last, s) for camera, spans in ident.spans.items() for f, last in spans
        ):
            return None  # e.g. seen in two cameras a corridor apart at once
        before = [(o.last_seen, o.camera, o.last_box) for o in others if o.last_seen < s.first_seen]
        if not others and ident.last_seen < s.first_seen:
            before = [(ident.last_seen, ident.last_camera, ident.last_box)]
        if not before:
            return 0.0
        last_seen, camera, box = max(before, key=lambda b: b[0])
        transition = self.cfg.transitions.get((camera, s.camera)) if camera != s.camera else None
        if transition is None:
            return 0.0
        if not transition.within(s.first_seen - last_seen):
            return None
        left_at = None if box is None else foot_point(box)
        return 1.0 if transition.through_doors(left_at, foot_point(s.first_box)) else -1.0

    def _too_soon(self, camera: str, first: float, last: float, s: TrackletSummary) -> bool:
        """Were ``camera``'s sighting ``first..last`` and tracklet ``s`` closer in time than the declared
        transition between their cameras takes (``min_s``)? Overlapping sightings in cameras that a
        transition joins are too close whatever its direction: such cameras do not share a view."""
        if camera == s.camera:
            return False
        if last < s.first_seen:
            transition = self.cfg.transitions.get((camera, s.camera))
            return transition is not None and s.first_seen - last < transition.min_s
        if s.last_seen < first:
            transition = self.cfg.transitions.get((s.camera, camera))
            return transition is not None and first - s.last_seen < transition.min_s
        return (camera, s.camera) in self.cfg.transitions or (s.camera, camera) in self.cfg.transitions

    def _floor(self, s: TrackletSummary, ident: Identity, others: list[TrackletSummary]) -> tuple[bool, float]:
        """(forbidden, mean support) over the identity's tracklets with floor tracks."""
        if s.floor is None or not len(s.floor):
            return False, 0.0
        tracks = [o.floor for o in others if o.floor is not None and len(o.floor)]
        if ident.past_floor is not None:
            tracks.append(ident.past_floor)
        supports = []
        for track in tracks:
            forbidden, support = floor_evidence(s.floor, track, self.cfg.floor)
            if forbidden:
                return True, 0.0
            if support:
                supports.append(support)
        return False, float(np.mean(supports)) if supports else 0.0

    def _continues(self, later: TrackletSummary, earlier: TrackletSummary) -> bool:
        """``later`` picks up where ``earlier`` (same camera) was last seen: a tracker break."""
        if later.camera != earlier.camera:
            return False
        gap = later.first_seen - earlier.last_seen
        if not -HANDOVER_S <= gap <= self.cfg.relink_max_gap_s or later.first_seen <= earlier.first_seen:
            return False  # a hand-over may overlap by a few frames: the new track starts before the old one is dropped
        gap = max(gap, 0.0)
        a, b = np.asarray(earlier.last_box, float), np.asarray(later.first_box, float)
        height = max(a[3] - a[1], b[3] - b[1], 1.0)
        moved = float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[3] - b[3])))
        return moved <= height * (0.25 + 0.5 * gap)  # half a body height per second: a walk, not a stranger

    # --- revision ---------------------------------------------------------------------------
    def _revise(self, now: float) -> list[Decision]:
        out = self._resolve_conflicts(now)
        out += self._reassign(now)
        out += self._merge()
        out += self._reclaim(now)
        return out

    def _resolve_conflicts(self, now: float) -> list[Decision]:
        """A tracklet that its own identity forbids (e.g. a lost track came back beside its successor)."""
        out = []
        for ident in list(self.identities.values()):
            if len(ident.members) < 2:
                continue
            for key in sorted(ident.members, key=lambda k: self.records[k].weight):
                if (
                    key in ident.members
                    and len(ident.members) > 1
                    and self.score(self.records[key], ident, True) <= FORBIDDEN
                ):
                    out.append(self._move(key, now, allow_new=True))
        return [d for d in out if d is not None]

    def _reassign(self, now: float) -> list[Decision]:
        out = []
        for key in sorted(self.assignment, key=lambda k: -self._joined[k]):  # the newest decision is doubted first
            if key not in self.assignment:
                continue
            s = self.records.get(key)
            ident = self.identities[self.assignment[key]]
            if s is None or s.appearance is None or len(ident.members) + (ident.past is not None) < 2:
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
        looks = [(i, self.appearance(i)) for i in idents]
        looks = [(i, a) for i, a in looks if a is not None]
        if not looks or s.appearance is None:
            return []
        cos = similarity(self.look(s), Embeddings.concat([a for _, a in looks]))[0]
        most = self.cfg.relink_bonus + self.cfg.floor_weight + self.cfg.transition_bonus
        reach = (cos - self.cfg.threshold) / self.cfg.scale + most
        return [i for (i, _), r in zip(looks, reach) if r >= need - 1e-9]

    def _merge(self) -> list[Decision]:
        out = []
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

    def merge_score(self, a: Identity, b: Identity) -> float:
        """How well identity ``b``'s tracklets fit ``a`` as a whole (FORBIDDEN if any cannot)."""
        app_a, app_b = self.appearance(a), self.appearance(b)
        if app_a is None or app_b is None:
            return FORBIDDEN
        floor, relink = [], 0.0
        for key in b.members:
            s = self.records[key]
            others = [self.records[k] for k in a.members]
            if self._time_evidence(s, a, others) is None:
                return FORBIDDEN
            forbidden, support = self._floor(s, a, others)
            if forbidden:
                return FORBIDDEN
            floor.append(support)
            if any(self._continues(s, o) or self._continues(o, s) for o in others):
                relink = self.cfg.relink_bonus
        for camera, spans in b.spans.items():  # b's final tracklets against a's, same camera
            if any(_overlap(f1, l1, f2, l2) for f1, l1 in spans for f2, l2 in a.spans.get(camera, ())):
                return FORBIDDEN
            if any(
                _overlap(f, last, self.records[k].first_seen, self.records[k].last_seen)
                for f, last in spans
                for k in a.members
                if self.records[k].camera == camera
            ):
                return FORBIDDEN
        evidence = self._appearance_evidence(float(similarity(app_b, app_a)[0, 0]))
        if evidence <= FORBIDDEN:
            return FORBIDDEN
        return evidence + relink + self.cfg.floor_weight * (max(floor) if floor else 0.0)

    def _reclaim(self, now: float) -> list[Decision]:
        """Give a person back the identity a look-alike took first.

        A look-alike's tracklet can join a person's identity while the person is out of view (the
        time window of a corridor lets both in). When the person's own tracklet then arrives, the
        look-alike's blocks it (:meth:`_conflict`), so it founds a new identity, and no single move
        or merge can undo the pair. Here identity B folds into A once A's *blocking* live tracklets
        leave for an identity of their own, when B fits the rest of A better than they did by
        ``reassign_margin``."""
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
            if a != b and self._conflict(self.records[x], self.records[y]):
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

    def _conflict(self, s: TrackletSummary, o: TrackletSummary) -> bool:
        """The two tracklets cannot be one person: one camera saw both at once (beyond a tracker
        hand-over), two cameras a transition apart saw them too close in time, or they stood far
        apart on the floor at the same time."""
        if s.camera == o.camera and _overlap(o.first_seen, o.last_seen, s.first_seen, s.last_seen):
            return not (self._continues(s, o) or self._continues(o, s))
        if self._too_soon(o.camera, o.first_seen, o.last_seen, s):
            return True
        if s.floor is None or o.floor is None or not len(s.floor) or not len(o.floor):
            return False
        return floor_evidence(s.floor, o.floor, self.cfg.floor)[0]

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
        self._appearance_cache.clear()
        return Decision("merged", keep_id, None, gone_id)

    def _drop_if_empty(self, gid: int) -> None:
        ident = self.identities.get(gid)
        if ident is not None and not ident.members and ident.past is None:
            del self.identities[gid]

    # --- finality and expiry ----------------------------------------------------------------
    def _finalise(self, now: float) -> None:
        horizon = now - self.cfg.revision_window_s
        for key in [k for k, s in self.records.items() if s.ended and s.last_seen < horizon]:
            self._make_final(key)

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
            self._fold_past(ident, self.look(s), s.weight, s.floor, s.last_seen)
            if self.centering is not None and s.n_embeddings >= self.cfg.min_embeddings:
                self.centering.add_final(s.camera, s.appearance)
        self._looks.pop(key, None)
        self._final.append((key, gid))
        self._appearance_cache.clear()

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

    def _expire(self, now: float) -> list[Decision]:
        idle = [i for i in self.identities.values() if not i.members]
        gone = [i for i in idle if now - i.last_seen > self.cfg.identity_ttl_s]
        extra = len(self.identities) - len(gone) - self.cfg.max_identities
        if extra > 0:  # over the gallery bound: forget the longest unseen first
            rest = sorted((i for i in idle if i not in gone), key=lambda i: i.last_seen)
            gone += rest[:extra]
        for ident in gone:
            del self.identities[ident.global_id]
        return [Decision("expired", i.global_id, cameras=tuple(sorted(i.cameras))) for i in gone]

    def _refresh(self, decisions: list[Decision]) -> None:
        """Keep each touched identity's last seen time and event embedding current."""
        touched = {d.global_id for d in decisions} | {self.assignment[k] for k in self.assignment}
        for gid in touched:
            ident = self.identities.get(gid)
            if ident is None:
                continue
            for key in ident.members:
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


def _overlap(a0: float, a1: float, b0: float, b1: float) -> bool:
    return a0 <= b1 and b0 <= a1
