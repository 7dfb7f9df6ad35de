"""Same-person and different-person similarity statistics, and the matching threshold they give.

The edge matches *tracklets* (means of a few crops) across cameras, so the statistics are taken
the same way: each identity's crops in one camera are cut into pseudo-tracklets of up to
``crops_per_tracklet`` crops (in file order), each averaged, and pairs of pseudo-tracklets from
*different* cameras are compared with the shared :func:`~trainer.embeddings.similarity`. The
threshold is the cosine that only ``false_match_rate`` of different-person pairs reach. Export
writes all of it into the model metadata; the edge uses the threshold unless configured.
"""
from __future__ import annotations

import numpy as np

from trainer.embeddings import Embeddings, similarity, weighted_mean


def pseudo_tracklets(emb: Embeddings, pids: np.ndarray, camids: np.ndarray, crops_per_tracklet: int) -> tuple[Embeddings, np.ndarray, np.ndarray]:
    """Means of up to ``crops_per_tracklet`` crops of one identity in one camera."""
    rows, out_pid, out_cam = [], [], []
    for pid, cam in sorted({(int(p), int(c)) for p, c in zip(pids, camids)}):
        idx = np.flatnonzero((pids == pid) & (camids == cam))
        for start in range(0, len(idx), crops_per_tracklet):
            chunk = idx[start:start + crops_per_tracklet]
            rows.append(weighted_mean(emb[chunk], np.ones(len(chunk))))
            out_pid.append(pid)
            out_cam.append(cam)
    return Embeddings.concat(rows), np.array(out_pid), np.array(out_cam)


def camera_centered(t: Embeddings, camids: np.ndarray) -> Embeddings:
    """Each camera's mean pseudo-tracklet taken out, re-normalised: what the edge compares when
    camera centering is on (``edge.identity.centering``; there the mean is learnt as the scene runs)."""
    g = t.global_.copy()
    parts = None if t.parts is None else t.parts.copy()
    for cam in np.unique(camids):
        rows = camids == cam
        g[rows] -= g[rows].mean(0)
        if parts is not None:
            parts[rows] -= parts[rows].mean(0)
    return Embeddings.normalized(g, parts, t.part_conf)


def _pair_stats(t: Embeddings, tp: np.ndarray, tc: np.ndarray, false_match_rate: float) -> dict:
    sim = similarity(t, t)
    cross = tc[:, None] != tc[None, :]
    same_id = tp[:, None] == tp[None, :]
    upper = np.triu(np.ones_like(cross), 1).astype(bool)
    same, diff = sim[cross & same_id & upper], sim[cross & ~same_id & upper]
    if len(same) == 0 or len(diff) == 0:
        raise ValueError("similarity statistics need identities seen in at least two cameras")
    threshold = float(np.quantile(diff, 1.0 - false_match_rate))
    return {
        "same_mean": round(float(same.mean()), 5), "same_std": round(float(same.std()), 5),
        "diff_mean": round(float(diff.mean()), 5), "diff_std": round(float(diff.std()), 5),
        "threshold": round(threshold, 5), "true_match_rate": round(float((same >= threshold).mean()), 4),
        "pairs_same": int(len(same)), "pairs_diff": int(len(diff)),
    }


def similarity_stats(emb: Embeddings, pids: np.ndarray, camids: np.ndarray, false_match_rate: float = 0.01,
                     crops_per_tracklet: int = 4) -> dict:
    """Cross-camera same/different-person cosine statistics of pseudo-tracklets and the threshold
    at ``false_match_rate``; ``true_match_rate`` is the share of same-person pairs it accepts.

    ``centered`` holds the same statistics after camera centering, and ``mean`` (``part_mean``
    for part-based models) the split's mean pseudo-tracklet: the edge's prior for a camera's look."""
    keep = pids >= 0
    t, tp, tc = pseudo_tracklets(emb[np.flatnonzero(keep)], pids[keep], camids[keep], crops_per_tracklet)
    out = _pair_stats(t, tp, tc, false_match_rate)
    out.update(false_match_rate=false_match_rate, crops_per_tracklet=crops_per_tracklet,
               split="evaluation query+gallery, cross-camera pseudo-tracklet pairs")
    out["centered"] = _pair_stats(camera_centered(t, tc), tp, tc, false_match_rate)
    out["mean"] = [round(float(v), 5) for v in t.global_.mean(0)]
    if t.parts is not None:
        out["part_mean"] = np.round(t.parts.mean(0), 5).tolist()
    return out
