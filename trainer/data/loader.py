"""Torch datasets and loaders over :class:`Sample` lists."""
from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate

from trainer.config import DataConfig, TrainConfig
from trainer.data.datasets import ReIDData, Sample, check_images, load_dataset
from trainer.data.sampler import PKBatchSampler
from sim.people import SyntheticSpec, ensure_synthetic_dataset
from trainer.data.transforms import test_transform, train_transform
from trainer.data.validation import carve_validation

log = logging.getLogger(__name__)


class ReadFailures:
    """Images that could not be read mid-run (a file that went bad after indexing): each is
    logged and counted, also from data-loader worker processes (the counter is shared)."""

    def __init__(self) -> None:
        self._count = multiprocessing.get_context().Value("i", 0)

    def add(self, path: str, exc: Exception) -> None:
        with self._count.get_lock():
            self._count.value += 1
        log.warning("skipping unreadable image %s: %s", path, exc)

    @property
    def count(self) -> int:
        return int(self._count.value)


def skip_failed(batch: list):
    """Collate without the items that could not be read (None); the batch gets smaller."""
    return default_collate([item for item in batch if item is not None])


class ImageDataset(Dataset):
    """Returns ``(image, pid, camid, index)``; a missing or unreadable image names its path.
    With ``failures`` an unreadable image is counted and returns None instead (see :func:`skip_failed`)."""

    def __init__(self, samples: Sequence[Sample], transform: Callable, failures: Optional[ReadFailures] = None) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.failures = failures

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        s = self.samples[index]
        try:
            with Image.open(s.path) as im:
                img = im.convert("RGB")
        except (OSError, ValueError) as exc:
            if self.failures is None:
                raise OSError(f"cannot read image {s.path}: {exc}") from exc
            self.failures.add(s.path, exc)
            return None
        return self.transform(img), s.pid, s.camid, index


def prepare_dataset(cfg: DataConfig) -> ReIDData:
    """Parse the configured dataset, generating the synthetic one first when asked for."""
    if cfg.dataset == "synthetic":
        spec = SyntheticSpec(**cfg.synthetic.model_dump())
        ensure_synthetic_dataset(Path(cfg.root), spec)
    data = check_images(load_dataset(cfg.dataset, cfg.root), skip=cfg.skip_bad_images)
    return carve_validation(data, cfg.val_ids, cfg.val_seed) if cfg.val_ids else data


def _dataset(samples: Sequence[Sample], transform: Callable, failures: Optional[ReadFailures]) -> dict:
    """DataLoader arguments for the dataset: with ``failures``, unreadable images are skipped."""
    return {"dataset": ImageDataset(samples, transform, failures), "collate_fn": skip_failed if failures is not None else None}


def pk_loader(samples: Sequence[Sample], cfg: TrainConfig, batch_size: int, rank: int = 0, world_size: int = 1,
              failures: Optional[ReadFailures] = None) -> DataLoader:
    d = cfg.data
    transform = train_transform(cfg.model.image_size, d.mean, d.std, d.augment.flip_prob, d.augment.padding, d.augment.erasing_prob)
    sampler = PKBatchSampler([s.pid for s in samples], batch_size, d.num_instances, cfg.seed, rank, world_size)
    return DataLoader(**_dataset(samples, transform, failures), batch_sampler=sampler, num_workers=d.workers, pin_memory=torch.cuda.is_available(), persistent_workers=False)


def eval_loader(samples: Sequence[Sample], cfg: TrainConfig, batch_size: Optional[int] = None, sampler=None,
                failures: Optional[ReadFailures] = None) -> DataLoader:
    d = cfg.data
    transform = test_transform(cfg.model.image_size, d.mean, d.std)
    return DataLoader(**_dataset(samples, transform, failures), batch_size=batch_size or cfg.eval.batch_size, shuffle=False, sampler=sampler, num_workers=d.workers)
