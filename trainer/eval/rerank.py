"""k-reciprocal re-ranking (Zhong et al., CVPR 2017).

Distance convention: the inputs are non-negative dissimilarities, smaller = more similar
(cosine distance ``1 - cos`` or squared Euclidean distance both work). As in the reference
implementation, each row of the joint (query + gallery) distance matrix is divided by its
maximum before use, and the result is::

    final = (1 - lambda) * jaccard + lambda * row_normalised_original        [Q, G]

so ``lambda_value = 1`` returns the row-normalised original distances and ``0`` the pure
k-reciprocal Jaccard distances. Defaults k1=20, k2=6, lambda=0.3 (CLIP-ReID used 50/15/0.3).
Memory is O((Q+G)^2): meant for benchmark-sized sets, not million-image galleries.
"""

from __future__ import annotations

import numpy as np


def _k_reciprocal(initial_rank: np.ndarray, i: int, k: int) -> np.ndarray:
    forward = initial_rank[i, : k + 1]
    backward = initial_rank[forward, : k + 1]
    return forward[np.any(backward == i, axis=1)]


def re_ranking(
    q_g_dist: np.ndarray,
    q_q_dist: np.ndarray,
    g_g_dist: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked [Q, G] distance matrix from the query-gallery, query-query and gallery-gallery ones."""
    num_q = q_g_dist.shape[0]
    original = np.block([[q_q_dist, q_g_dist], [q_g_dist.T, g_g_dist]]).astype(np.float32)
    if (original < 0).any():
        raise ValueError("re-ranking needs non-negative distances (use 1 - cosine or squared Euclidean)")
    original = original / np.maximum(original.max(axis=1, keepdims=True), 1e-12)
    n = original.shape[0]
    initial_rank = np.argsort(original, axis=1, kind="stable")
    V = np.zeros((n, n), dtype=np.float32)
    half = int(np.around(k1 / 2))
    for i in range(n):
        recip = _k_reciprocal(initial_rank, i, k1)
        expansion = recip
        for cand in recip:
            cand_recip = _k_reciprocal(initial_rank, cand, half)
            if len(np.intersect1d(cand_recip, recip)) > 2 / 3 * len(cand_recip):
                expansion = np.append(expansion, cand_recip)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        V[i, expansion] = weight / weight.sum()
    if k2 != 1:
        V = np.stack([V[initial_rank[i, :k2]].mean(axis=0) for i in range(n)])
    inv_index = [np.flatnonzero(V[:, j]) for j in range(n)]
    jaccard = np.zeros((num_q, n), dtype=np.float32)
    for i in range(num_q):
        shared = np.zeros(n, dtype=np.float32)
        for j in np.flatnonzero(V[i]):
            rows = inv_index[j]
            shared[rows] += np.minimum(V[i, j], V[rows, j])
        jaccard[i] = 1 - shared / (2 - shared)
    final = (1 - lambda_value) * jaccard + lambda_value * original[:num_q]
    return final[:, num_q:]
