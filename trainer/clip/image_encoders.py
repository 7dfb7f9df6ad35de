"""CLIP image encoders adapted to person ReID, as in CLIP-ReID.

Both encoders reuse open_clip's modules (and so its weights) and return :class:`ImageFeatures`:

- ``global_feat`` [B, C]: the pre-projection feature (ViT: [CLS] after ``ln_post``; ResNet:
  average-pooled stage-4 map),
- ``proj_feat`` [B, E]: the same image in CLIP's joint image-text space (ViT: ``@ proj``;
  ResNet: the attention pool),
- ``prev_feat`` [B, C']: the feature one step before the end, which CLIP-ReID's stage-2 triplet
  loss also reads (ViT: [CLS] out of the penultimate block, without ``ln_post``, as the official
  code's ``x11``; ResNet: average-pooled stage-3 map, the official ``x3``),
- ``tokens`` {block: [B, N, C]} patch tokens of the requested ViT blocks (1-based: 9 = output
  of the 9th block), or ``maps`` {stage: [B, C, H, W]} of the requested ResNet stages (1-4).

The ReID test feature is ``cat(global_feat, proj_feat)`` (768 + 512 for ViT-B/16).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import nn


@dataclass
class ImageFeatures:
    global_feat: torch.Tensor
    proj_feat: torch.Tensor
    tokens: dict[int, torch.Tensor] = field(default_factory=dict)
    maps: dict[int, torch.Tensor] = field(default_factory=dict)
    grid: tuple[int, int] = (0, 0)
    prev_feat: Optional[torch.Tensor] = None


def resample_grid_embedding(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Bicubically resample a [1 + gh*gw, D] positional embedding (first row: class token) to ``new_grid``."""
    if tuple(old_grid) == tuple(new_grid):
        return pos.detach().clone()
    cls, grid = pos[:1], pos[1:]
    dim = grid.shape[-1]
    grid = grid.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=new_grid, mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], dim).to(pos.dtype)
    return torch.cat([cls.detach(), grid], dim=0)


class ReIDViT(nn.Module):
    """open_clip ViT with a ReID input size, optional overlapping patches and side information.

    SIE (side information embedding) adds ``coefficient * E[camera]`` either to the class token
    (``mode='cls'``, CLIP-ReID) or to every token (``mode='all'``, TransReID).
    """

    def __init__(
        self,
        visual: VisionTransformer,
        image_size: tuple[int, int] = (256, 128),
        patch_stride: Optional[int] = None,
        num_cameras: int = 0,
        sie_coefficient: float = 3.0,
        sie_mode: str = "cls",
    ) -> None:
        super().__init__()
        if getattr(visual, "attn_pool", None) is not None or visual.pool_type != "tok":
            raise ValueError("ReIDViT needs a CLIP ViT with class-token pooling")
        patch = visual.patch_size
        stride = patch_stride or patch[0]
        self.conv1 = visual.conv1
        if stride != patch[0]:
            self.conv1.stride = (stride, stride)
        self.image_size = tuple(image_size)
        self.grid = ((image_size[0] - patch[0]) // stride + 1, (image_size[1] - patch[1]) // stride + 1)
        self.class_embedding = visual.class_embedding
        self.positional_embedding = nn.Parameter(
            resample_grid_embedding(visual.positional_embedding.data, visual.grid_size, self.grid)
        )
        self.ln_pre = visual.ln_pre
        self.transformer = visual.transformer
        self.ln_post = visual.ln_post
        self.proj = visual.proj
        self.width = visual.conv1.out_channels
        self.feature_dim = self.width
        self.proj_dim = visual.output_dim
        self.sie_mode = sie_mode
        self.sie_coefficient = sie_coefficient
        self.num_cameras = num_cameras
        if num_cameras > 0:
            self.sie_embed = nn.Parameter(torch.zeros(num_cameras, self.width))
            nn.init.trunc_normal_(self.sie_embed, std=0.02)
        else:
            self.register_parameter("sie_embed", None)

    @property
    def num_blocks(self) -> int:
        return len(self.transformer.resblocks)

    def embed_patches(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 1 + N, C] tokens entering the first block."""
        if images.shape[-2:] != self.image_size:
            raise ValueError(f"expected images of size {self.image_size}, got {tuple(images.shape[-2:])}")
        x = self.conv1(images).flatten(2).transpose(1, 2)
        cls = self.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        if self.sie_embed is not None:
            if camids is None:
                raise ValueError("this model uses camera embeddings (SIE): pass camids")
            sie = self.sie_coefficient * self.sie_embed[camids].to(x.dtype)
            if self.sie_mode == "cls":
                x = torch.cat([x[:, :1] + sie[:, None], x[:, 1:]], dim=1)
            else:
                x = x + sie[:, None]
        return self.ln_pre(x)

    def forward(
        self, images: torch.Tensor, camids: Optional[torch.Tensor] = None, return_layers: Sequence[int] = ()
    ) -> ImageFeatures:
        x = self.embed_patches(images, camids)
        batch_first = getattr(self.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        tokens: dict[int, torch.Tensor] = {}
        wanted = set(return_layers)
        last = self.num_blocks
        prev = None
        for i, block in enumerate(self.transformer.resblocks, start=1):
            x = block(x)
            if i in wanted:
                tokens[i] = x.transpose(0, 1) if not batch_first else x
            if i == last - 1:
                prev = x[0] if not batch_first else x[:, 0]
        if not batch_first:
            x = x.transpose(0, 1)
        cls = self.ln_post(x[:, 0])
        return ImageFeatures(global_feat=cls, proj_feat=cls @ self.proj, tokens=tokens, grid=self.grid, prev_feat=prev)


class ReIDResNet(nn.Module):
    """open_clip ModifiedResNet with a ReID input size and (by default) last stride 1.

    The attention pool's positional embedding is resampled to the final feature grid, so its
    output (``proj_feat``) stays in CLIP's joint space at any input size.
    """

    def __init__(self, visual: ModifiedResNet, image_size: tuple[int, int] = (256, 128), last_stride: int = 1) -> None:
        super().__init__()
        self.body = visual
        self.image_size = tuple(image_size)
        if last_stride == 1:
            first = visual.layer4[0]
            first.avgpool = nn.Identity()
            if first.downsample is not None:
                first.downsample[0] = nn.Identity()  # the AvgPool2d that precedes the 1x1 conv
        reduction = 16 if last_stride == 1 else 32
        self.grid = (image_size[0] // reduction, image_size[1] // reduction)
        old = visual.attnpool.positional_embedding
        side = int(round((old.shape[0] - 1) ** 0.5))
        visual.attnpool.positional_embedding = nn.Parameter(resample_grid_embedding(old.data, (side, side), self.grid))
        self.feature_dim = visual.attnpool.k_proj.in_features
        self.proj_dim = visual.output_dim
        self.num_cameras = 0
        self.aggregators = nn.ModuleDict()  # stage index -> module(before, after); MSCSA fills it

    @property
    def stages(self) -> list[nn.Sequential]:
        return [self.body.layer1, self.body.layer2, self.body.layer3, self.body.layer4]

    def stage_channels(self) -> list[int]:
        last: list[Any] = [stage[-1] for stage in self.stages]  # open_clip Bottlenecks (untyped)
        return [block.conv3.out_channels for block in last]

    def forward(
        self, images: torch.Tensor, camids: Optional[torch.Tensor] = None, return_layers: Sequence[int] = ()
    ) -> ImageFeatures:
        if images.shape[-2:] != self.image_size:
            raise ValueError(f"expected images of size {self.image_size}, got {tuple(images.shape[-2:])}")
        x = self.body.stem(images.to(self.body.conv1.weight.dtype))
        maps: dict[int, torch.Tensor] = {}
        wanted = set(return_layers)
        prev = None
        for i, stage in enumerate(self.stages, start=1):
            x = self.stage_forward(i, stage, x)
            if i in wanted:
                maps[i] = x
            if i == 3:
                prev = x.mean(dim=(2, 3))
        global_feat = x.mean(dim=(2, 3))
        return ImageFeatures(
            global_feat=global_feat, proj_feat=self.body.attnpool(x), maps=maps, grid=self.grid, prev_feat=prev
        )

    def stage_input_channels(self) -> list[int]:
        first: list[Any] = [stage[0] for stage in self.stages]  # open_clip Bottlenecks (untyped)
        return [block.conv1.in_channels for block in first]

    def stage_forward(self, index: int, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One ResNet stage, then its aggregator (MSCSA) over the maps before and after it, if any."""
        y = stage(x)
        key = str(index)
        return self.aggregators[key](x, y) if key in self.aggregators else y


# The image encoders a model may have: what methods, export and evaluation can rely on
# (``feature_dim``, ``proj_dim``, ``grid``, forward -> ImageFeatures)
ImageEncoder = Union[ReIDViT, ReIDResNet]
