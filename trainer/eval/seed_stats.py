"""Statistics over training seeds: how sure a method comparison is.

A tiny training's mAP moves by several points from one seed to the next, and a benchmark's
queries are a sample too, so a method "wins" only when the difference survives both. For each
condition (clean, each query corruption) and metric, :func:`seed_statistics` gives the mean and
standard deviation over seeds, a 95 % hierarchical bootstrap interval (seeds and queries
resampled), and, against the baseline trained with the same seeds and evaluated on the same
queries, the paired difference with its interval: significant when the interval excludes 0.

``scripts/compare_methods.py --seeds N`` writes these into ``methods.json``; the README's
significance claims about the occlusion-robust methods rest on them.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

# One trained model's per-query results: {condition: {"ap": [Q], "r1": [Q]}} (percent per query)
PerQuery = dict[str, dict[str, list[float]]]


def seed_statistics(
    per_seed: list[PerQuery], reference: Optional[list[PerQuery]], boot: int = 2000, rng_seed: int = 0
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per condition and metric: mean +- std over seeds and a 95 % bootstrap interval; with
    ``reference`` (the baseline trained with the same seeds, evaluated on the same queries) the
    paired difference and its interval. The bootstrap is hierarchical: each draw resamples the
    seeds and, independently, the queries, so the interval covers both training noise and the
    choice of queries. A difference is significant when its interval excludes 0."""
    rng = np.random.default_rng(rng_seed)
    n_seeds, n_queries = len(per_seed), len(per_seed[0]["clean"]["ap"])
    seed_idx = rng.integers(0, n_seeds, size=(boot, n_seeds))
    query_idx = rng.integers(0, n_queries, size=(boot, n_queries))

    def draws(values: np.ndarray) -> np.ndarray:  # [seeds, Q] -> [boot] resampled grand means
        return np.array([values[s][:, q].mean() for s, q in zip(seed_idx, query_idx)])

    stats: dict[str, dict[str, dict[str, Any]]] = {}
    for cond in per_seed[0]:
        stats[cond] = {}
        for metric, name in (("ap", "mAP"), ("r1", "R1")):
            values = np.array([s[cond][metric] for s in per_seed])  # [seeds, Q]
            per_seed_means = values.mean(1)
            boot_means = draws(values)
            row: dict[str, Any] = {
                "mean": float(per_seed_means.mean()),
                "std": float(per_seed_means.std(ddof=1)) if n_seeds > 1 else 0.0,
                "per_seed": [round(float(v), 2) for v in per_seed_means],
                "ci95": [float(np.percentile(boot_means, 2.5)), float(np.percentile(boot_means, 97.5))],
            }
            if reference is not None:
                diff = values - np.array([s[cond][metric] for s in reference])  # paired by seed and query
                boot_diff = draws(diff)
                lo, hi = float(np.percentile(boot_diff, 2.5)), float(np.percentile(boot_diff, 97.5))
                row["diff_vs_baseline"] = {
                    "mean": float(diff.mean()),
                    "ci95": [lo, hi],
                    "significant": bool(lo > 0 or hi < 0),
                }
            stats[cond][name] = row
    return stats
