"""Image transforms of CLIP-ReID: resize, flip, pad + random crop, CLIP normalisation, random erasing."""
from __future__ import annotations

from typing import Sequence

from torchvision import transforms as T


def train_transform(size: Sequence[int], mean: Sequence[float], std: Sequence[float], flip_prob: float = 0.5, padding: int = 10, erasing_prob: float = 0.5) -> T.Compose:
    """Random erasing fills the rectangle with random normal pixels after normalisation, as the
    official code (timm ``RandomErasing(mode='pixel')``). Filling with 0 (the mean colour) would
    train every model on the robustness benchmark's ``mask`` corruption."""
    return T.Compose([
        T.Resize(tuple(size), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(flip_prob),
        T.Pad(padding),
        T.RandomCrop(tuple(size)),
        T.ToTensor(),
        T.Normalize(mean, std),
        T.RandomErasing(p=erasing_prob, value="random"),
    ])


def test_transform(size: Sequence[int], mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    return T.Compose([
        T.Resize(tuple(size), interpolation=T.InterpolationMode.BICUBIC),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])
