"""CMC, mAP and mINP under the standard ReID protocol.

For each query, gallery images with the same identity *and* the same camera are removed (they
are trivial matches); gallery distractors (ids that never appear as queries, e.g. Market-1501
pid 0) stay and can only push true matches down. A query left with no true match is skipped
and counted in :attr:`RankResult.num_skipped`.

Ties: the gallery is ordered with a *stable* sort of the distances, so equal distances keep
gallery order. This is deterministic; a different tie-break can change metrics on tied inputs.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class RankResult:
    cmc: np.ndarray  # [max_rank]: fraction of valid queries with a true match within rank r
    mAP: float
    mINP: float
    num_valid: int
    num_skipped: int
    per_query_ap: Optional[np.ndarray] = None  # [num_valid]: for bootstrap confidence intervals over queries
    per_query_r1: Optional[np.ndarray] = None  # [num_valid] in {0, 1}

    def rank(self, r: int) -> float:
        return float(self.cmc[min(r, len(self.cmc)) - 1])

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("per_query_ap")
        d.pop("per_query_r1")
        d["cmc"] = [float(x) for x in self.cmc]
        d.update({"R1": self.rank(1), "R5": self.rank(5), "R10": self.rank(10)})
        return d


def evaluate_rank(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
) -> RankResult:
    """distmat [Q, G] (smaller = more similar) -> CMC up to ``max_rank``, mAP, mINP."""
    distmat = np.asarray(distmat)
    num_q, num_g = distmat.shape
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    if (num_q, num_g) != (len(q_pids), len(g_pids)):
        raise ValueError(f"distmat {distmat.shape} does not match {len(q_pids)} queries x {len(g_pids)} gallery")
    if num_g < max_rank:
        log.warning("gallery has %d images, fewer than max_rank %d", num_g, max_rank)
        max_rank = num_g
    cmc_sum = np.zeros(max_rank)
    aps, inps, r1s = [], [], []
    for i in range(num_q):
        order = np.argsort(distmat[i], kind="stable")
        remove = (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
        matches = (g_pids[order] == q_pids[i])[~remove].astype(np.float64)
        if not matches.any():
            continue
        hits = matches.cumsum()
        cmc = np.minimum(hits, 1.0)
        cmc_sum += (
            cmc[:max_rank] if len(cmc) >= max_rank else np.pad(cmc, (0, max_rank - len(cmc)), constant_values=1.0)
        )
        ranks = np.flatnonzero(matches)  # 0-based positions of the true matches
        precision_at_hits = hits[ranks] / (ranks + 1.0)
        aps.append(precision_at_hits.mean())
        r1s.append(float(matches[0]))
        inps.append(matches.sum() / (ranks[-1] + 1.0))  # hardest match: |G_q| / R_hard
    num_valid = len(aps)
    if num_valid == 0:
        raise ValueError("no query has a true match in the gallery (after same-camera filtering)")
    return RankResult(
        cmc_sum / num_valid,
        float(np.mean(aps)),
        float(np.mean(inps)),
        num_valid,
        num_q - num_valid,
        np.asarray(aps),
        np.asarray(r1s),
    )
