"""Torch datasets and loaders over :class:`Sample` lists."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from trainer.config import DataConfig, TrainConfig
from trainer.data.datasets import ReIDData, Sample, load_dataset
from trainer.data.sampler import PKBatchSampler
from trainer.data.synthetic import SyntheticSpec, ensure_synthetic_dataset
from trainer.data.transforms import test_transform, train_transform


class ImageDataset(Dataset):
    """Returns ``(image, pid, camid, index)``; a missing or unreadable image names its path."""

    def __init__(self, samples: Sequence[Sample], transform: Callable) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        s = self.samples[index]
        try:
            with Image.open(s.path) as im:
                img = im.convert("RGB")
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot read image {s.path}: {exc}") from exc
        return self.transform(img), s.pid, s.camid, index


def prepare_dataset(cfg: DataConfig) -> ReIDData:
    """Parse the configured dataset, generating the synthetic one first when asked for."""
    if cfg.dataset == "synthetic":
        spec = SyntheticSpec(**cfg.synthetic.model_dump())
        ensure_synthetic_dataset(Path(cfg.root), spec)
    return load_dataset(cfg.dataset, cfg.root)


def pk_loader(samples: Sequence[Sample], cfg: TrainConfig, batch_size: int, rank: int = 0, world_size: int = 1) -> DataLoader:
    d = cfg.data
    transform = train_transform(cfg.model.image_size, d.mean, d.std, d.augment.flip_prob, d.augment.padding, d.augment.erasing_prob)
    sampler = PKBatchSampler([s.pid for s in samples], batch_size, d.num_instances, cfg.seed, rank, world_size)
    return DataLoader(ImageDataset(samples, transform), batch_sampler=sampler, num_workers=d.workers, pin_memory=torch.cuda.is_available(), persistent_workers=False)


def eval_loader(samples: Sequence[Sample], cfg: TrainConfig, batch_size: Optional[int] = None, sampler=None) -> DataLoader:
    d = cfg.data
    transform = test_transform(cfg.model.image_size, d.mean, d.std)
    return DataLoader(ImageDataset(samples, transform), batch_size=batch_size or cfg.eval.batch_size, shuffle=False, sampler=sampler, num_workers=d.workers)
