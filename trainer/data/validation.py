"""A validation split carved from the training identities, for choosing anything tunable.

Hyper-parameters and the stored matching threshold must never be chosen on the test identities.
``data.val_ids`` (a share of the training identities) moves that many identities, drawn with
``data.val_seed``, out of training into a validation query/gallery pair: the rest train, the
test split is untouched. Only identities seen by at least two cameras are drawn (a query needs
a match in another camera); each gives one query image per camera (its first) and the rest go
to the validation gallery, as in Market-1501.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from trainer.data.datasets import ReIDData, Sample, relabel


def carve_validation(data: ReIDData, share: float, seed: int = 0) -> ReIDData:
    """``data`` with ``round(share * identities)`` training identities moved to ``val_query`` /
    ``val_gallery`` (their dataset pids kept); training labels stay ``0..N-1``."""
    if not 0 < share < 1:
        raise ValueError(f"data.val_ids must be a share in (0, 1), got {share}")
    label_to_pid = {label: pid for pid, label in data.train_pid_map.items()}
    cams: dict[int, set[int]] = {}
    for s in data.train:
        cams.setdefault(s.pid, set()).add(s.camid)
    eligible = sorted(label for label, c in cams.items() if len(c) >= 2)
    count = int(round(share * len(cams)))
    if count < 2 or count > len(eligible) or len(cams) - count < 2:
        raise ValueError(f"data.val_ids={share} gives {count} validation identities out of {len(cams)} "
                         f"({len(eligible)} seen by two cameras): need at least 2, and 2 left to train")
    chosen = set(np.random.default_rng(seed).choice(eligible, count, replace=False).tolist())
    query: list[Sample] = []
    gallery: list[Sample] = []
    seen: set[tuple[int, int]] = set()
    for s in data.train:
        if s.pid not in chosen:
            continue
        sample = Sample(s.path, label_to_pid.get(s.pid, s.pid), s.camid)
        key = (s.pid, s.camid)
        (gallery if key in seen else query).append(sample)
        seen.add(key)
    train, inner = relabel([s for s in data.train if s.pid not in chosen])
    pid_map = {pid: inner[label] for pid, label in data.train_pid_map.items() if label in inner}
    return replace(data, train=train, train_pid_map=pid_map, val_query=query, val_gallery=gallery)
