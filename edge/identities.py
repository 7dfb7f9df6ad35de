"""Cross-camera identities: a gallery of global ids and the assignment of waiting tracklets.

Tracklets with enough appearance evidence wait for an identity. All tracklets waiting at one
moment are assigned together with the Hungarian solver (``scipy.optimize.linear_sum_assignment``)
on cosine similarity to each identity's gallery, under constraints:

* one identity cannot be two tracklets of the same camera that were there at the same time
  (live now, or overlapping in time with one that ended);
* optional transition windows: an identity last seen in camera A can appear in camera B only
  ``min_s..max_s`` seconds later (when a window for A -> B is configured);
* below ``threshold`` a tracklet founds a new identity; tracklets left over in one round are
  compared with the identities founded in that round, so a person who appears in two
  overlapping cameras at the same moment gets one identity, not two.

Identities keep their best-quality embeddings (``gallery_size``), are compared by the shared
:func:`trainer.embeddings.similarity` (so online matching agrees with offline evaluation) and
expire after ``identity_ttl_s`` without being seen.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy.optimize import linear_sum_assignment

from trainer.embeddings import Embeddings, similarity, weighted_mean

from .config import MatchingConfig
from .tracklets import Tracklet

FORBIDDEN = -2.0  # below any cosine similarity
MAX_SPANS = 8  # ended tracklets remembered per identity and camera


@dataclass
class Identity:
    global_id: int
    created: float
    last_seen: float
    last_camera: str
    cameras: set[str] = field(default_factory=set)
    live: set[tuple[str, int]] = field(default_factory=set)  # (camera, local id) of live tracklets
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # per camera: (first, last seen) of ended tracklets
    gallery: list[tuple[float, Embeddings]] = field(default_factory=list)  # (quality, one crop's or tracklet's appearance)

    def appearance(self) -> Optional[Embeddings]:
        """Quality-weighted mean of the gallery (per part confidence-weighted for part models)."""
        if not self.gallery:
            return None
        return weighted_mean(Embeddings.concat([e for _, e in self.gallery]), np.array([q for q, _ in self.gallery]))

    @property
    def embedding(self) -> Optional[np.ndarray]:
        """The global embedding [D] (what events carry)."""
        appearance = self.appearance()
        return None if appearance is None else appearance.global_[0]


class IdentityGallery:
    def __init__(self, cfg: MatchingConfig):
        self.cfg = cfg
        self.identities: dict[int, Identity] = {}
        self._ids = itertools.count(1)
        self._windows = {(t.src, t.dst): (t.min_s, t.max_s) for t in cfg.transitions}

    def __len__(self) -> int:
        return len(self.identities)

    def ready(self, t: Tracklet) -> bool:
        return t.global_id is None and t.embedding is not None and t.n_embeddings >= self.cfg.min_embeddings

    def found(self, t: Tracklet, now: float) -> Identity:
        """A new identity for ``t``."""
        ident = Identity(next(self._ids), now, now, t.camera_id)
        self.identities[ident.global_id] = ident
        self._attach(ident, t, now)
        return ident

    def _attach(self, ident: Identity, t: Tracklet, now: float) -> None:
        t.global_id = ident.global_id
        ident.live.add(t.key)
        ident.cameras.add(t.camera_id)
        ident.last_seen, ident.last_camera = now, t.camera_id
        if t.embedding is not None:
            self.add_evidence(ident, t.appearance(), t.last_quality or 1.0)

    def add_evidence(self, ident: Identity, evidence: Embeddings, quality: float) -> None:
        ident.gallery.append((quality, evidence))
        if len(ident.gallery) > self.cfg.gallery_size:
            ident.gallery.sort(key=lambda item: item[0], reverse=True)
            del ident.gallery[self.cfg.gallery_size :]

    def allowed(self, ident: Identity, t: Tracklet, now: float) -> bool:
        if any(cam == t.camera_id for cam, _ in ident.live):
            return False
        if any(t.first_seen <= last for _, last in ident.spans.get(t.camera_id, ())):
            return False  # the two tracklets were in this camera at the same time: two people
        window = self._windows.get((ident.last_camera, t.camera_id))
        if window is not None and ident.last_camera != t.camera_id:
            gap = t.first_seen - ident.last_seen
            return window[0] <= gap <= window[1]
        return True

    def similarity_matrix(self, waiting: list[Tracklet], now: float) -> tuple[np.ndarray, list[Identity]]:
        idents = [i for i in self.identities.values() if i.gallery]
        if not waiting or not idents:
            return np.zeros((len(waiting), len(idents)), np.float32), idents
        a = Embeddings.concat([t.appearance() for t in waiting])
        b = Embeddings.concat([i.appearance() for i in idents])
        sim = similarity(a, b).astype(np.float32)
        for r, t in enumerate(waiting):
            for c, ident in enumerate(idents):
                if not self.allowed(ident, t, now):
                    sim[r, c] = FORBIDDEN
        return sim, idents

    def assign(self, waiting: list[Tracklet], now: float) -> list[tuple[str, Tracklet, Identity]]:
        """Give every waiting tracklet an identity: ('assigned', ...) to an old one or ('new', ...)."""
        if not waiting:
            return []
        if not self.cfg.enabled:
            return [("new", t, self.found(t, now)) for t in waiting]
        blind = [("new", t, self.found(t, now)) for t in waiting if t.embedding is None]  # nothing to compare
        waiting = [t for t in waiting if t.embedding is not None]
        sim, idents = self.similarity_matrix(waiting, now)
        out: list[tuple[str, Tracklet, Identity]] = []
        matched: set[int] = set()
        if sim.size:
            rows, cols = linear_sum_assignment(-sim)
            for r, c in zip(rows, cols):
                if sim[r, c] >= self.cfg.threshold:
                    self._attach(idents[c], waiting[r], now)
                    out.append(("assigned", waiting[r], idents[c]))
                    matched.add(r)
        founded: list[Identity] = []  # people who appear in two overlapping cameras at once
        for r, t in enumerate(waiting):
            if r in matched:
                continue
            best, best_sim = None, self.cfg.threshold
            for ident in founded:
                s = float(similarity(t.appearance(), ident.appearance())[0, 0])
                if s >= best_sim and self.allowed(ident, t, now):
                    best, best_sim = ident, s
            if best is not None:
                self._attach(best, t, now)
                out.append(("assigned", t, best))
            else:
                founded.append(self.found(t, now))
                out.append(("new", t, founded[-1]))
        return blind + out

    def observe(self, t: Tracklet, now: float, new_evidence: Optional[Embeddings] = None, quality: float = 1.0) -> Optional[Identity]:
        """Keep the tracklet's identity fresh (last seen, evidence)."""
        ident = self.identities.get(t.global_id) if t.global_id is not None else None
        if ident is None:
            return None
        ident.last_seen, ident.last_camera = now, t.camera_id
        ident.live.add(t.key)
        if new_evidence is not None:
            self.add_evidence(ident, new_evidence, quality)
        return ident

    def release(self, t: Tracklet) -> None:
        ident = self.identities.get(t.global_id) if t.global_id is not None else None
        if ident is not None:
            ident.live.discard(t.key)
            spans = ident.spans.setdefault(t.camera_id, [])
            spans.append((t.first_seen, t.last_seen))
            del spans[:-MAX_SPANS]

    def expire(self, now: float) -> list[Identity]:
        gone = [i for i in self.identities.values() if not i.live and now - i.last_seen > self.cfg.identity_ttl_s]
        for ident in gone:
            del self.identities[ident.global_id]
        return gone
