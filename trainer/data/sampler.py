"""PK sampling: batches of P identities x K images, the standard for triplet-loss ReID training.

Every rank builds the same list of batches for an epoch (same seed, same epoch) and keeps every
``world_size``-th one, so distributed training needs no communication to sample and each rank
sees different identities.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices: ``batch_size // num_instances`` ids x ``num_instances`` images.

    Identities with fewer than K images are sampled with replacement. ``set_epoch`` must be
    called each epoch (as with ``DistributedSampler``) for a new, reproducible order.
    """

    def __init__(self, pids: Sequence[int], batch_size: int, num_instances: int = 4, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size % num_instances:
            raise ValueError(f"batch_size {batch_size} is not a multiple of num_instances {num_instances}")
        self.index_by_pid: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pids):
            self.index_by_pid[int(pid)].append(index)
        self.pids = sorted(self.index_by_pid)
        self.num_pids_per_batch = batch_size // num_instances
        if len(self.pids) < self.num_pids_per_batch:
            raise ValueError(f"{len(self.pids)} identities cannot fill batches of {self.num_pids_per_batch} identities")
        self.num_instances = num_instances
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks: dict[int, list[list[int]]] = {}
        for pid in self.pids:
            idxs = list(self.index_by_pid[pid])
            if len(idxs) < self.num_instances:
                idxs = rng.choice(idxs, self.num_instances, replace=True).tolist()
            idxs = rng.permutation(idxs).tolist()
            usable = len(idxs) - len(idxs) % self.num_instances
            chunks[pid] = [idxs[i : i + self.num_instances] for i in range(0, usable, self.num_instances)]
        batches: list[list[int]] = []
        available = [pid for pid in self.pids if chunks[pid]]
        while len(available) >= self.num_pids_per_batch:
            chosen = rng.choice(available, self.num_pids_per_batch, replace=False)
            batch = []
            for pid in chosen.tolist():
                batch.extend(chunks[pid].pop())
            batches.append(batch)
            available = [pid for pid in available if chunks[pid]]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        usable = len(batches) - len(batches) % self.world_size
        return iter(batches[self.rank : usable : self.world_size])

    def __len__(self) -> int:
        return len(self._all_batches()) // self.world_size
