"""The exported graph: raw uint8 crops in, L2-normalised embeddings out.

Outputs: ``embedding`` [B, D]; part-based methods (RGANet) add ``part_features`` [B, P, Dp]
(L2-normalised) and ``part_confidence`` [B, P] in [0, 1], which the edge feeds to the same
confidence-weighted ``similarity`` as evaluation.

Input ``images`` is uint8 [B, H, W, 3] RGB, so the edge only resizes crops: conversion to float,
CLIP mean/std normalisation and NHWC->NCHW happen inside the graph. SIE models get a second
input ``camera`` (int64 [B], 0-based camera index) instead of one engine per camera: one engine
serves every camera and batches across them.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from trainer.models.reid import CLIPReID


class EmbeddingGraph(nn.Module):
    mean: torch.Tensor  # buffers (register_buffer): pixel mean/std scaled to uint8
    std: torch.Tensor

    def __init__(self, model: CLIPReID, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model.eval()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

    @property
    def uses_camera(self) -> bool:
        return getattr(self.model.image_encoder, "sie_embed", None) is not None

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W]."""
        x = images.permute(0, 3, 1, 2).float()
        return (x - self.mean) / self.std

    @property
    def output_names(self) -> list[str]:
        return ["embedding"] + (["part_features", "part_confidence"] if self.model.num_parts else [])

    def forward(self, images: torch.Tensor, camera: Optional[torch.Tensor] = None):
        out = self.model.infer(self.preprocess(images), camera).normalized()
        if out.parts is None:
            return out.embedding
        return out.embedding, out.parts, out.part_conf
