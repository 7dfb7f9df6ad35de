"""Same-person and different-person similarity statistics, and the matching threshold they give.

The edge matches *tracklets* (means of a few crops) across cameras, so the statistics are taken
the same way: each identity's crops in one camera are cut into pseudo-tracklets of up to
``crops_per_tracklet`` crops (in file order), each averaged, and pairs of pseudo-tracklets from
*different* cameras are compared with the shared :func:`~core.embeddings.similarity`. The
threshold is the cosine that only ``false_match_rate`` of different-person pairs reach.

:func:`swap_stats` measures the edge's other model-dependent threshold: how unlike its own track
a crop of the same person can look, below which a track has turned into someone else.

Export writes all of it into the model metadata; the edge uses the thresholds unless configured.

A threshold is only stored when the statistics separate the two kinds of pair
(:mod:`core.pair_statistics`, the rule a site's own statistics follow too): a model whose
embeddings have collapsed gets :class:`NoSeparation`, one line that says so, and nothing is stored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from core.embeddings import Embeddings, similarity, weighted_mean
from core.model_card import PairStatistics, SimilarityStatistics, SwapStatistics
from core.pair_statistics import COSINE_RESOLUTION, NoSeparation, camera_centered, check_separation, pair_statistics

__all__ = ["COSINE_RESOLUTION", "NoSeparation", "camera_centered", "check_separation", "similarity_stats", "swap_stats"]

_FRAME = re.compile(r"_c\d+s\d+_(\d+)_")


def pseudo_tracklets(
    emb: Embeddings, pids: np.ndarray, camids: np.ndarray, crops_per_tracklet: int
) -> tuple[Embeddings, np.ndarray, np.ndarray]:
    """Means of up to ``crops_per_tracklet`` crops of one identity in one camera."""
    rows, out_pid, out_cam = [], [], []
    for pid, cam in sorted({(int(p), int(c)) for p, c in zip(pids, camids)}):
        idx = np.flatnonzero((pids == pid) & (camids == cam))
        for start in range(0, len(idx), crops_per_tracklet):
            chunk = idx[start : start + crops_per_tracklet]
            rows.append(weighted_mean(emb[chunk], np.ones(len(chunk))))
            out_pid.append(pid)
            out_cam.append(cam)
    return Embeddings.concat(rows), np.array(out_pid), np.array(out_cam)


def _pair_stats(
    t: Embeddings, tp: np.ndarray, tc: np.ndarray, false_match_rate: float, label: str = ""
) -> PairStatistics:
    sim = similarity(t, t)
    cross = tc[:, None] != tc[None, :]
    same_id = tp[:, None] == tp[None, :]
    upper = np.triu(np.ones_like(cross), 1).astype(bool)
    same, diff = sim[cross & same_id & upper], sim[cross & ~same_id & upper]
    if len(same) == 0 or len(diff) == 0:
        raise ValueError("similarity statistics need identities seen in at least two cameras")
    return pair_statistics(same, diff, false_match_rate, label)


def similarity_stats(
    emb: Embeddings, pids: np.ndarray, camids: np.ndarray, false_match_rate: float = 0.01, crops_per_tracklet: int = 4
) -> SimilarityStatistics:
    """Cross-camera same/different-person cosine statistics of pseudo-tracklets and the threshold
    at ``false_match_rate``; ``true_match_rate`` is the share of same-person pairs it accepts.

    ``centered`` holds the same statistics after camera centering, and ``mean`` (``part_mean``
    for part-based models) the split's mean pseudo-tracklet: the edge's prior for a camera's look.
    :class:`NoSeparation` when either set of statistics does not separate same from different."""
    keep = pids >= 0
    t, tp, tc = pseudo_tracklets(emb[np.flatnonzero(keep)], pids[keep], camids[keep], crops_per_tracklet)
    out: SimilarityStatistics = {
        **_pair_stats(t, tp, tc, false_match_rate),
        "false_match_rate": false_match_rate,
        "crops_per_tracklet": crops_per_tracklet,
        "split": "evaluation query+gallery, cross-camera pseudo-tracklet pairs",
    }
    out["centered"] = _pair_stats(camera_centered(t, tc), tp, tc, false_match_rate, "camera-centered: ")
    out["mean"] = [round(float(v), 5) for v in t.global_.mean(0)]
    if t.parts is not None:
        out["part_mean"] = np.round(t.parts.mean(0), 5).tolist()
    return out


def swap_stats(
    vectors: np.ndarray,
    pids: np.ndarray,
    camids: np.ndarray,
    order: Optional[np.ndarray] = None,
    false_cut: float = 0.001,
    history: int = 3,
    seed: int = 0,
) -> SwapStatistics:
    """The cosine below which a new crop no longer looks like its own track (``swap_below``).

    Each identity's crops in one camera, in ``order`` (frame numbers; else as given), act as a
    track: every crop after the first ``history`` is compared with the mean of the crops before
    it, and so is one crop of another person of the same camera. ``swap_below`` is the cosine that
    only ``false_cut`` of the same person's crops fall below; the edge cuts a track after two
    crops in a row below it (``edge.runtime.tracklets.Tracklet.looks_swapped``), so a false cut needs that
    twice. ``other_below`` is the share of another person's crops it catches."""
    rng = np.random.default_rng(seed)
    same, other = [], []
    for cam in np.unique(camids):
        in_cam = camids == cam
        for pid in np.unique(pids[in_cam]):
            rows = np.flatnonzero(in_cam & (pids == pid))
            if order is not None:
                rows = rows[np.argsort(order[rows], kind="stable")]
            strangers = np.flatnonzero(in_cam & (pids != pid))
            for k in range(history, len(rows)):
                mean = vectors[rows[:k]].mean(0)
                mean /= max(float(np.linalg.norm(mean)), 1e-12)
                same.append(float(vectors[rows[k]] @ mean))
                if len(strangers):
                    other.append(float(vectors[rng.choice(strangers)] @ mean))
    if not same:
        raise ValueError(f"swap statistics need an identity with more than {history} crops in one camera")
    same_a, other_a = np.array(same), np.array(other)
    threshold = float(np.quantile(same_a, false_cut))
    return {
        "swap_below": round(threshold, 4),
        "false_cut": false_cut,
        "crops": len(same),
        "same_p1": round(float(np.percentile(same_a, 1)), 4),
        "same_p50": round(float(np.median(same_a)), 4),
        "other_p50": round(float(np.median(other_a)), 4) if len(other) else None,
        "other_below": round(float((other_a < threshold).mean()), 4) if len(other) else None,
    }


def gallery_swap_stats(
    emb: Embeddings, pids: np.ndarray, camids: np.ndarray, paths: Sequence[str]
) -> Optional[SwapStatistics]:
    """:func:`swap_stats` of a gallery (whole tracks of crops; a benchmark's queries are picked,
    often occluded, crops), in frame order for Market-style names
    (``<pid>_c<cam>s<seq>_<frame>_<n>.jpg``), else in file order; None when no identity has enough
    crops in one camera."""
    frames = [_FRAME.search(Path(p).name) for p in paths]
    named = [m for m in frames if m is not None]
    order = np.array([int(m.group(1)) for m in named]) if frames and len(named) == len(frames) else None
    keep = pids >= 0
    try:
        stats = swap_stats(emb.global_[keep], pids[keep], camids[keep], None if order is None else order[keep])
    except ValueError:
        return None
    stats["split"] = "gallery tracks" + (", frame order" if order is not None else ", file order")
    return stats
