"""Do AG-ReID's pseudo-labels agree with what the synthetic people really wear?

AG-ReID's pseudo-labels are each training identity's learned attribute tokens (stage 1's
``prompt_learner.ctx``, one group of tokens per slot: gender, hair, upper, lower, shoes, bag).
The synthetic generator knows every identity's true appearance (``synthetic.json``: hair, top,
bottom and shoe colours, hair length, top pattern, bottom kind, bag, hat). The statistic is a
Mantel test: the Spearman correlation, over all pairs of identities, between how alike two
identities' pseudo-labels are (cosine) and how alike their true attribute is (minus the RGB
distance for colours, 1/0 for equal/different categories), with a one-sided permutation p-value
that relabels identities at random (chance: r around 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

COLOUR_ATTRIBUTES = ("hair", "top", "bottom", "shoes")
CATEGORY_ATTRIBUTES = {
    "long_hair": lambda a: a["long_hair"],
    "top_pattern": lambda a: a["top_pattern"],
    "bottom_kind": lambda a: a["bottom_kind"],
    "bag": lambda a: a["bag"] is not None,
    "hat": lambda a: a["hat"] is not None,
}
ATTRIBUTES = (*COLOUR_ATTRIBUTES, "colours", *CATEGORY_ATTRIBUTES)


def attribute_similarity(appearances: Sequence[dict[str, Any]], attribute: str) -> np.ndarray:
    """[C, C] similarity of the identities' true ``attribute``; ``colours``: all four colours at once."""
    if attribute in CATEGORY_ATTRIBUTES:
        values = np.array([CATEGORY_ATTRIBUTES[attribute](a) for a in appearances])
        return (values[:, None] == values[None, :]).astype(float)
    if attribute == "colours":
        x = np.array([[c for k in COLOUR_ATTRIBUTES for c in a[k]] for a in appearances], dtype=float)
    elif attribute in COLOUR_ATTRIBUTES:
        x = np.array([a[attribute] for a in appearances], dtype=float)
    else:
        raise ValueError(f"unknown attribute {attribute!r}; known: {', '.join(ATTRIBUTES)}")
    return -np.linalg.norm(x[:, None] - x[None, :], axis=-1)


def mantel(a: np.ndarray, b: np.ndarray, permutations: int = 999, seed: int = 0) -> tuple[float, float]:
    """Spearman r between the off-diagonal pairs of two [C, C] symmetric matrices, and the
    one-sided p-value of r under random relabelling of ``b``'s identities."""
    c = a.shape[0]
    if a.shape != (c, c) or b.shape != (c, c) or c < 4:
        raise ValueError(f"need two square matrices over the same >= 4 identities, got {a.shape} and {b.shape}")
    iu = np.triu_indices(c, 1)
    ra = rankdata(a[iu])
    ra = (ra - ra.mean()) / ra.std()

    def r(m: np.ndarray) -> float:
        rb = rankdata(m[iu])
        sd = rb.std()
        return 0.0 if sd == 0 else float((ra * (rb - rb.mean()) / sd).mean())

    observed = r(b)
    rng = np.random.default_rng(seed)
    null = np.array([r(b[np.ix_(p, p)]) for p in (rng.permutation(c) for _ in range(permutations))])
    return observed, float((1 + (null >= observed).sum()) / (1 + permutations))


def pseudo_label_agreement(
    tokens: np.ndarray,
    slots: dict[str, list[int]],
    appearances: Sequence[dict[str, Any]],
    permutations: int = 999,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float]]]:
    """``tokens`` [C, T, W] learned attribute tokens (row c: training label c, whose true
    appearance is ``appearances[c]``); ``slots`` slot -> token columns (``slot_positions`` order).

    -> {group: {attribute: {"r": r, "p": p}}} for each slot's tokens and for ``all`` of them.
    """
    if len(tokens) != len(appearances):
        raise ValueError(f"{len(tokens)} pseudo-labels but {len(appearances)} appearances")
    out: dict[str, dict[str, dict[str, float]]] = {}
    start = 0
    groups = {}
    for slot, positions in slots.items():
        groups[slot] = tokens[:, start : start + len(positions)]
        start += len(positions)
    groups["all"] = tokens
    truths = {attr: attribute_similarity(appearances, attr) for attr in ATTRIBUTES}
    for group, vecs in groups.items():
        flat = vecs.reshape(len(vecs), -1).astype(float)
        flat = flat / np.linalg.norm(flat, axis=1, keepdims=True).clip(min=1e-12)
        sim = flat @ flat.T
        out[group] = {}
        for attr, truth in truths.items():
            r, p = mantel(sim, truth, permutations, seed)
            out[group][attr] = {"r": round(r, 4), "p": round(p, 4)}
    return out
