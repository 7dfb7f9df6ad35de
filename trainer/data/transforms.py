"""Image transforms of CLIP-ReID: resize, flip, pad + random crop, CLIP normalisation, random erasing."""
from __future__ import annotations

from typing import Sequence

from torchvision import transforms as T


def train_transform(size: Sequence[int], mean: Sequence[float], std: Sequence[float], flip_prob: float = 0.5, padding: int = 10, erasing_prob: float = 0.5) -> T.Compose:
    """Erasing runs after normalisation with value 0, i.e. it paints the dataset mean colour."""
    return T.Compose([
        T.Resize(tuple(size), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(flip_prob),
        T.Pad(padding),
        T.RandomCrop(tuple(size)),
        T.ToTensor(),
        T.Normalize(mean, std),
        T.RandomErasing(p=erasing_prob, value=0),
    ])


def test_transform(size: Sequence[int], mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    return T.Compose([
        T.Resize(tuple(size), interpolation=T.InterpolationMode.BICUBIC),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])
