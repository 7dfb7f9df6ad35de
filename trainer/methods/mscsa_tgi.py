"""MSCSA + TGI for the RN50 CLIP-ReID (shared/papers/clipreid-mscsa-tgi.txt).

MSCSA (multi-stage channel-spatial aggregation) sits after ResNet stages 1-3. It fuses the
feature map entering the stage (low level) with the one leaving it (high level):

- channel aggregation: 1x1 convs turn the high map into queries and the low map (strided 1, 2,
  2 to the high map's size) into keys and values; a channel-similarity softmax mixes the value
  channels, a 1x1 conv restores the high map's width and the result is added to it;
- spatial aggregation: the same with a position-similarity softmax, on the channel-aggregated map.

The restoring convs start at zero, so each block starts as the identity and the pretrained
backbone's features are untouched until the blocks learn something. The blocks are part of the
image encoder and train from stage 1 on (the backbone stays frozen there), so the stage-1
prompts are learned on MSCSA features; they are exported with the encoder.

TGI (text-guided image) is a 3-layer transformer decoder, 4 heads, width 256: every identity's
stage-1 text feature is a query, the image's stage-3 map (after MSCSA) the keys and values; its
output is added to the text features with a learnable scale initialised tiny (DenseCLIP) so the
language prior survives. The fused, per-image text features are the targets of stage 2's
image-to-text loss. TGI is text-side: inference does not run it.

Cost: every image decodes all C identities' queries, whose self-attention is O(B * C^2 * width)
per layer (measured on 2 CPU cores, docs/methods.md: time grows ~C^2). ``max_classes`` bounds
it: with more identities than that, a batch fuses its own identities plus uniformly drawn
others up to the bound (the rest keep their plain text logits), so the cost is O(B * S^2). The
paper fuses all; None (the default) does too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from core.configio import StrictModel
from trainer.clip.image_encoders import ImageEncoder, ImageFeatures, ReIDResNet
from trainer.methods.base import Method
from trainer.methods.registry import register_method

if TYPE_CHECKING:  # pragma: no cover
    from trainer.clip.text import TextEncoder
    from trainer.models.reid import CLIPReID

STAGE_STRIDES = {1: 1, 2: 2, 3: 2}


class MSCSABlock(nn.Module):
    """(low [B, Cl, H*s, W*s], high [B, Ch, H, W]) -> aggregated high map [B, Ch, H, W]."""

    def __init__(self, low_channels: int, high_channels: int, stride: int, reduction: int = 8) -> None:
        super().__init__()
        c = max(8, high_channels // reduction)
        self.c_q = nn.Conv2d(high_channels, c, 1)
        self.c_k = nn.Conv2d(low_channels, c, 1, stride=stride)
        self.c_v = nn.Conv2d(low_channels, c, 1, stride=stride)
        self.c_out = nn.Conv2d(c, high_channels, 1)
        self.s_q = nn.Conv2d(high_channels, c, 1)
        self.s_k = nn.Conv2d(low_channels, c, 1, stride=stride)
        self.s_v = nn.Conv2d(low_channels, c, 1, stride=stride)
        self.s_out = nn.Conv2d(c, high_channels, 1)
        for conv in (self.c_out, self.s_out):
            nn.init.zeros_(conv.weight)
            if conv.bias is not None:  # Conv2d's default: it has one
                nn.init.zeros_(conv.bias)

    @staticmethod
    def _flat(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)  # [B, C, H*W]

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        b, _, h, w = high.shape
        dtype = self.c_q.weight.dtype
        low, high_in = low.to(dtype), high.to(dtype)
        q, k, v = self._flat(self.c_q(high_in)), self._flat(self.c_k(low)), self._flat(self.c_v(low))
        channel = torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5, dim=-1)  # [B, c, c]
        high_c = high_in + self.c_out((channel @ v).view(b, -1, h, w))
        q, k, v = self._flat(self.s_q(high_c)), self._flat(self.s_k(low)), self._flat(self.s_v(low))
        spatial = torch.softmax(q.transpose(1, 2) @ k / q.shape[1] ** 0.5, dim=-1)  # [B, HW, HW]
        out = high_c + self.s_out((v @ spatial.transpose(1, 2)).view(b, -1, h, w))
        return out.to(high.dtype)


class TextGuidedFusion(nn.Module):
    """Text features [C, E] + visual map [B, Cv, H, W] -> per-image fused text features [B, C, E]."""

    def __init__(
        self,
        text_dim: int,
        visual_dim: int,
        width: int = 256,
        layers: int = 3,
        heads: int = 4,
        scale_init: float = 1e-4,
    ) -> None:
        super().__init__()
        self.text_in = nn.Linear(text_dim, width)
        self.memory_in = nn.Sequential(nn.LayerNorm(visual_dim), nn.Linear(visual_dim, width))
        layer = nn.TransformerDecoderLayer(
            width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True, activation="gelu"
        )
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, text_dim))
        self.scale = nn.Parameter(torch.tensor(float(scale_init)))

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        b = visual.shape[0]
        memory = self.memory_in(visual.flatten(2).transpose(1, 2).float())  # [B, HW, width]
        queries = self.text_in(text.float())[None].expand(b, -1, -1)
        return text.float()[None] + self.scale * self.out(self.decoder(queries, memory))


class MSCSATGIConfig(StrictModel):
    """MSCSA blocks after ResNet stages 1-3 and the text-guided image (TGI) decoder."""

    stages: list[int] = Field(default_factory=lambda: [1, 2, 3], description="ResNet stages followed by an MSCSA block")
    reduction: int = Field(8, ge=1, description="channel reduction of the 1x1 query/key/value convs")
    tgi: bool = Field(True, description="text-guided fusion of the stage-2 image-to-text targets")
    tgi_layers: int = Field(3, ge=1)
    tgi_heads: int = Field(4, ge=1)
    tgi_width: int = Field(256, ge=8)
    tgi_scale_init: float = Field(
        1e-4, ge=0, description="initial scale of the decoder's residual (tiny: keep the text prior)"
    )
    max_classes: Optional[int] = Field(
        None,
        ge=2,
        description="TGI fuses at most this many identities per batch (the batch's own + drawn others); None: all, "
        "as the paper (cost ~ C^2)",
    )


@register_method("mscsa_tgi", MSCSATGIConfig, backbone="resnet")
class MSCSATGI(Method):
    stage1_needs_images = True

    @classmethod
    def build(
        cls, section: MSCSATGIConfig, image_encoder: ImageEncoder, text_encoder: TextEncoder, num_classes: int
    ) -> MSCSATGI:
        return cls(section, image_encoder, text_encoder.output_dim)

    def __init__(self, cfg: MSCSATGIConfig, encoder: nn.Module, text_dim: int) -> None:
        super().__init__()
        if not isinstance(encoder, ReIDResNet):
            raise ValueError("MSCSA+TGI is defined for the RN50 (ResNet) backbone")
        bad = [s for s in cfg.stages if s not in STAGE_STRIDES]
        if bad:
            raise ValueError(f"MSCSA stages must be among 1-3, got {bad}")
        self.cfg = cfg
        low, high = encoder.stage_input_channels(), encoder.stage_channels()
        # a plain dict: the blocks are registered in the image encoder (setup), not twice
        self.blocks = {s: MSCSABlock(low[s - 1], high[s - 1], STAGE_STRIDES[s], cfg.reduction) for s in cfg.stages}
        self.tgi = (
            TextGuidedFusion(text_dim, high[2], cfg.tgi_width, cfg.tgi_layers, cfg.tgi_heads, cfg.tgi_scale_init)
            if cfg.tgi
            else None
        )
        self.register_buffer("text_features", torch.zeros(0), persistent=False)

    def setup(self, model: CLIPReID) -> None:
        encoder = model.image_encoder
        if not isinstance(encoder, ReIDResNet):  # refused at construction
            raise TypeError("MSCSA aggregates ResNet stages: use a ResNet backbone")
        for stage, block in self.blocks.items():
            encoder.aggregators[str(stage)] = block  # owned by the encoder: exported with it

    def stage1_parameters(self) -> list[nn.Parameter]:
        return [p for block in self.blocks.values() for p in block.parameters()]

    def new_parameters(self) -> list[nn.Parameter]:
        return self.stage1_parameters() + list(self.parameters())  # the MSCSA blocks live in the encoder

    def stage2_parameters(self) -> list[nn.Parameter]:
        return [] if self.tgi is None else list(self.tgi.parameters())

    def train_layers(self) -> tuple[int, ...]:
        return (3,) if self.tgi is not None else ()

    def begin_stage2(self, model: CLIPReID, text_features: torch.Tensor) -> None:
        self.text_features = text_features.detach().float().clone()

    def fused_classes(self, pids: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Identities TGI fuses this batch: all (None) unless there are more than
        ``max_classes``; then the batch's own identities plus uniformly drawn others."""
        limit, total = self.cfg.max_classes, len(self.text_features)
        if limit is None or total <= limit or pids is None:
            return None
        own = pids.unique()
        rest = torch.ones(total, dtype=torch.bool, device=own.device)
        rest[own] = False
        others = rest.nonzero().squeeze(1)
        others = others[torch.randperm(len(others), device=own.device)[: max(0, limit - len(own))]]
        return torch.cat([own, others]).sort().values

    def forward_train(
        self, model: CLIPReID, feats: ImageFeatures, pids: Optional[torch.Tensor] = None
    ) -> dict[str, torch.Tensor]:
        if self.tgi is None or not self.training or self.text_features.numel() == 0:
            return {}
        scale = model.logit_scale.exp().detach()
        image = F.normalize(feats.proj_feat.float(), dim=-1)
        chosen = self.fused_classes(pids)
        if chosen is None:
            fused = self.tgi(self.text_features, feats.maps[3])  # [B, C, E]
            return {"i2t_logits": scale * torch.einsum("be,bce->bc", image, F.normalize(fused, dim=-1))}
        # bounded: the other identities keep their plain (unfused) text logits
        logits = scale * image @ F.normalize(self.text_features, dim=-1).T  # [B, C]
        fused = self.tgi(self.text_features[chosen], feats.maps[3])  # [B, S, E]
        fused_logits = scale * torch.einsum("be,bse->bs", image, F.normalize(fused, dim=-1))
        return {"i2t_logits": logits.index_copy(1, chosen, fused_logits)}


def tgi_step_seconds(
    classes: int,
    batch: int = 8,
    text_dim: int = 1024,
    visual_dim: int = 1024,
    grid: tuple[int, int] = (16, 8),
    repeats: int = 2,
) -> float:
    """Seconds of one TGI forward + backward at the RN50 full-size shapes (stage-3 map 16 x 8,
    1024 channels, 1024-d text), for measuring how the cost grows with the identities fused."""
    import time

    torch.manual_seed(0)
    fusion = TextGuidedFusion(text_dim, visual_dim)
    text, visual = torch.randn(classes, text_dim), torch.randn(batch, visual_dim, *grid)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fusion(text, visual).square().mean().backward()
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":  # python -m trainer.methods.mscsa_tgi 100 200 400 800
    import sys

    torch.set_num_threads(1)
    for c in [int(a) for a in sys.argv[1:]] or [100, 200, 400, 800]:
        print(f"C={c:5d}  batch 8: {tgi_step_seconds(c):.3f} s per forward+backward (1 thread)")
