"""Same- and different-person cosines in, the matching threshold out: the one rule for both the
trainer's statistics (``trainer.eval.similarity_stats``, cross-camera pseudo-tracklets of a
labelled split) and a site's own (``edge.identity.site_similarity``, unlabelled footage).

The threshold is the cosine that only ``false_match_rate`` of different-person pairs reach. It is
only kept when the statistics separate the two kinds of pair: it must accept a larger share of
same-person pairs than the share of different-person pairs it admits, and by more than the cosine
error the deployed runtime may add (:data:`COSINE_RESOLUTION`). A model whose embeddings have
collapsed (different people at cosine 0.9999) gets :class:`NoSeparation`, one line that says so.
"""

from __future__ import annotations

import numpy as np

from core.embeddings import Embeddings
from core.model_card import PairStatistics

# How far a deployed embedding's cosines may move: the FP16 export's parity tolerance
# (``export.parity.FP16_MIN_COSINE`` = 0.999). Same-person cosines closer than this to the
# threshold are not reliably on its accepting side.
COSINE_RESOLUTION = 1e-3


class NoSeparation(ValueError):
    """Same- and different-person similarities that do not separate: there is no threshold to store."""


def check_separation(
    same: np.ndarray, diff: np.ndarray, threshold: float, false_match_rate: float, label: str = ""
) -> None:
    """Raise :class:`NoSeparation` unless ``threshold`` (+ the runtime's cosine error) accepts a
    larger share of the ``same``-person cosines than the ``false_match_rate`` of ``diff`` it admits."""
    accepted = float((same >= threshold + COSINE_RESOLUTION).mean())
    if accepted > false_match_rate:
        return
    raise NoSeparation(
        f"{label}same- and different-person cosines do not separate "
        f"(same {same.mean():.5f} ± {same.std():.5f}, different {diff.mean():.5f} ± {diff.std():.5f}): "
        f"the threshold {threshold:.5f} at false-match rate {false_match_rate:g} "
        f"accepts {100 * accepted:.1f} % of same-person pairs "
        f"by more than the runtime's cosine error {COSINE_RESOLUTION:g}; "
        "no matching threshold stored (retrain, or set matching.threshold)"
    )


def pair_statistics(same: np.ndarray, diff: np.ndarray, false_match_rate: float, label: str = "") -> PairStatistics:
    """The statistics of ``same`` and ``diff`` cosines and the threshold at ``false_match_rate``
    (:class:`NoSeparation` when they do not separate)."""
    same, diff = np.asarray(same, float), np.asarray(diff, float)
    if len(same) == 0 or len(diff) == 0:
        raise ValueError("similarity statistics need same-person and different-person pairs")
    threshold = float(np.quantile(diff, 1.0 - false_match_rate))
    check_separation(same, diff, threshold, false_match_rate, label)
    return {
        "same_mean": round(float(same.mean()), 5),
        "same_std": round(float(same.std()), 5),
        "diff_mean": round(float(diff.mean()), 5),
        "diff_std": round(float(diff.std()), 5),
        "threshold": round(threshold, 5),
        "true_match_rate": round(float((same >= threshold).mean()), 4),
        "pairs_same": int(len(same)),
        "pairs_diff": int(len(diff)),
    }


def camera_centered(t: Embeddings, camids: np.ndarray) -> Embeddings:
    """Each camera's mean pseudo-tracklet taken out, re-normalised: what the edge compares when
    camera centering is on (``edge.identity.centering``; there the mean is learnt as the scene
    runs). The trainer's statistics and a site's (``edge.identity.site_similarity``) both center so."""
    g = t.global_.copy()
    parts = None if t.parts is None else t.parts.copy()
    for cam in np.unique(camids):
        rows = camids == cam
        g[rows] -= g[rows].mean(0)
        if parts is not None:
            parts[rows] -= parts[rows].mean(0)
    return Embeddings.normalized(g, parts, t.part_conf)
