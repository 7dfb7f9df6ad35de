"""SAGA-ReID: local aggregation of intermediate patch tokens aligned with text-space anchors
(shared/papers/saga-reid.txt and the authors' public release, whose choices we follow where the
paper is silent; docs/methods.md lists every component).

- **Anchors** live in CLIP's text embedding space, with no per-image text: K phrase prompts
  (body parts, clothing, accessories; 24 by default), each with its *own* learnable context
  tokens initialised from the phrase's token embeddings, through the frozen text encoder and a
  bias-free linear map to the visual width. M domain anchors (3) come from an MLP over the
  image's mean patch token.
- **Refinement**: the patch tokens of an intermediate block (9 of 12) are refined by
  cross-attention blocks (queries: patch tokens; keys/values: text + domain anchors; residual
  attention then residual MLP), initialised from that CLIP block's attention, norms and MLP.
- **Aggregation**: each patch weighs ``max over anchors`` of its last-block attention (a patch
  that matches some anchor strongly counts; one that matches none counts little), normalised
  over patches; the weighted sum of refined tokens is the local feature.
- **Losses** (only in the method stage): ID (BNNeck + classifier, label smoothing) and
  batch-hard triplet on the local feature, plus ``lambda_div * mean_{k != l} cos(t_k, t_l)^2``
  over the K text anchors, which keeps them apart (without it they collapse onto one vector).
- **Stage order** (release): CLIP-ReID stage 1, the full stage 2, *then* the SAGA head trains on
  the frozen, trained backbone (``method.frozen_backbone_epochs``); no joint fine-tuning after.
  Until then the head is inactive and stage 2 is exactly the baseline's.
- **Fusion**: ``cat(sqrt(w_l) n(local), sqrt(w_c) n(cls), sqrt(w_p) n(proj))``, ``n`` = L2
  normalisation, weights 2 / 0.2 / 0.05: the fused vector's norm is ``sqrt(sum w)``, so the cosine
  of two fused features is ``sum_i w_i cos_i / sum_i w_i``, the weighted mean of the per-part
  cosines (local 88.9 %, [CLS] 8.9 %, projection 2.2 %), as the release's ``w ** 0.5`` scaling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from core.configio import StrictModel
from trainer.clip.image_encoders import ImageEncoder, ImageFeatures, ReIDViT
from trainer.clip.text import SharedContextPrompts, TextEncoder
from trainer.losses import batch_hard_triplet, id_loss
from trainer.methods.base import Inference, Method
from trainer.methods.registry import register_method

if TYPE_CHECKING:
    from open_clip.transformer import ResidualAttentionBlock

    # pragma: no cover
    from trainer.config import Stage2Config
    from trainer.models.reid import CLIPReID, ReIDOutput


def fuse(parts: list[torch.Tensor], weights: tuple[float, ...]) -> torch.Tensor:
    """``cat(sqrt(w_i) * n(f_i))``: after L2 normalisation of the result, the dot product of two
    fused vectors is ``sum w_i cos_i / sum w_i`` (each part's cosine weighted by ``w_i``)."""
    return torch.cat([w**0.5 * F.normalize(p.float(), dim=1) for p, w in zip(parts, weights)], dim=1)


def anchor_diversity(anchors: torch.Tensor) -> torch.Tensor:
    """Mean squared cosine between distinct anchors [K, C] (0 when they are orthogonal)."""
    a = F.normalize(anchors.float(), dim=-1)
    gram = a @ a.T
    off = ~torch.eye(len(a), dtype=torch.bool, device=a.device)
    return gram[off].pow(2).mean()


class DomainAnchors(nn.Module):
    """Mean patch token [B, C] -> M domain anchors [B, M, C] (two-layer MLP, as the release)."""

    def __init__(self, dim: int, count: int) -> None:
        super().__init__()
        self.count = count
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, count * dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(tokens.mean(1)).view(tokens.shape[0], self.count, -1)


class RefinementBlock(nn.Module):
    """Pre-norm cross-attention (patches -> anchors) and MLP, both residual; returns the
    head-averaged attention [B, N, K] for the aggregation."""

    def __init__(self, dim: int, heads: int, mlp_width: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"SAGA: width {dim} is not divisible by {heads} heads")
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_width), nn.GELU(), nn.Linear(mlp_width, dim))

    @torch.no_grad()
    def init_from_clip_block(self, block: ResidualAttentionBlock) -> None:
        """Copy a CLIP ``ResidualAttentionBlock``'s attention, norms and MLP (release: block 9)."""
        self.attn.in_proj_weight.copy_(block.attn.in_proj_weight)
        self.attn.in_proj_bias.copy_(block.attn.in_proj_bias)
        self.attn.out_proj.weight.copy_(block.attn.out_proj.weight)
        self.attn.out_proj.bias.copy_(block.attn.out_proj.bias)
        for norm in (self.norm_q, self.norm_kv):
            norm.load_state_dict(block.ln_1.state_dict())
        self.norm_mlp.load_state_dict(block.ln_2.state_dict())
        self.mlp[0].load_state_dict(block.mlp.c_fc.state_dict())
        self.mlp[2].load_state_dict(block.mlp.c_proj.state_dict())

    def forward(self, x: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kv = self.norm_kv(anchors)
        update, attn = self.attn(self.norm_q(x), kv, kv, need_weights=True, average_attn_weights=True)
        x = x + update
        return x + self.mlp(self.norm_mlp(x)), attn


SAGA_PHRASES = (
    "head",
    "hair",
    "face",
    "neck",
    "shoulders",
    "arms",
    "hands",
    "torso",
    "waist",
    "legs",
    "knees",
    "feet",
    "shirt",
    "jacket",
    "coat",
    "dress",
    "trousers",
    "shorts",
    "skirt",
    "shoes",
    "backpack",
    "handbag",
    "hat",
    "glasses",
)


class SAGAConfig(StrictModel):
    """SAGA-ReID: intermediate patch tokens refined against text-space anchors, local aggregation."""

    layer: int = Field(
        9,
        ge=1,
        description="ViT block whose patch tokens are refined (1-based); the refinement blocks start as a copy of it",
    )
    phrases: list[str] = Field(
        default_factory=lambda: list(SAGA_PHRASES), min_length=2, description="one text anchor per phrase"
    )
    template: str = Field(
        "{ctx} {phrase} person.", description="anchor prompt; {ctx}: the anchor's own learnable tokens"
    )
    n_ctx: int = Field(
        4, ge=1, description="learnable context tokens per anchor (initialised from the phrase's tokens)"
    )
    domain_anchors: int = Field(3, ge=0, description="anchors generated per image from its mean patch token")
    blocks: int = Field(2, ge=1, description="cross-attention refinement blocks")
    heads: int = Field(8, ge=1)
    lambda_div: float = Field(
        0.05, ge=0, description="weight of the anchor-diversity loss (mean squared cosine between text anchors)"
    )
    fusion_weights: tuple[float, float, float] = Field(
        (2.0, 0.2, 0.05), description="local aggregate, [CLS], projected feature: each part's share of the fused cosine"
    )


@register_method("saga", SAGAConfig, backbone="vit")
class SAGA(Method):
    @classmethod
    def build(
        cls, section: SAGAConfig, image_encoder: ImageEncoder, text_encoder: TextEncoder, num_classes: int
    ) -> SAGA:
        return cls(section, image_encoder, text_encoder.output_dim, num_classes)

    def __init__(self, cfg: SAGAConfig, encoder: nn.Module, text_dim: int, num_classes: int) -> None:
        super().__init__()
        if not isinstance(encoder, ReIDViT):
            raise ValueError("SAGA refines ViT patch tokens: use a ViT backbone")
        if not 1 <= cfg.layer <= encoder.num_blocks:
            raise ValueError(f"SAGA layer {cfg.layer} is outside the backbone's 1..{encoder.num_blocks} blocks")
        self.cfg = cfg
        dim = encoder.feature_dim
        clip_block = encoder.transformer.resblocks[cfg.layer - 1]
        self.anchor_map = nn.Linear(text_dim, dim, bias=False)
        nn.init.xavier_uniform_(self.anchor_map.weight)
        self.domain = DomainAnchors(dim, cfg.domain_anchors) if cfg.domain_anchors else None
        blocks = [RefinementBlock(dim, cfg.heads, clip_block.mlp.c_fc.out_features) for _ in range(cfg.blocks)]
        for block in blocks:
            block.init_from_clip_block(clip_block)
        self.blocks = nn.ModuleList(blocks)
        self.neck = nn.BatchNorm1d(dim)
        self.neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)
        self._dims = (dim, dim, encoder.proj_dim)
        self.prompts: Optional[SharedContextPrompts] = None
        self.head_active = False  # the head trains after stage 2 (begin_method_stage)

    def setup(self, model: CLIPReID) -> None:
        self.prompts = SharedContextPrompts(
            model.text_encoder, self.cfg.template, self.cfg.phrases, self.cfg.n_ctx, per_phrase=True
        )

    def text_anchors(self, model: CLIPReID) -> torch.Tensor:
        """[K, C] phrase anchors in the visual width (the text side is a constant in eval mode)."""
        if self.prompts is None:
            raise RuntimeError("SAGA.setup(model) has not run: no phrase prompts yet")
        return self.anchor_map(self.prompts(model.text_encoder).float())

    def train_layers(self) -> tuple[int, ...]:
        return (self.cfg.layer,) if self.head_active else ()

    def inference_layers(self) -> tuple[int, ...]:
        return (self.cfg.layer,)

    def begin_method_stage(self, model: CLIPReID) -> None:
        self.head_active = True

    def aggregate(
        self, model: CLIPReID, feats: ImageFeatures, text_anchors: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (local identity feature [B, C], patch weights [B, N] summing to 1 per image,
        last block's attention [B, N, K + M] of each patch over the anchors)."""
        x = feats.tokens[self.cfg.layer][:, 1:].float()
        text = self.text_anchors(model) if text_anchors is None else text_anchors
        anchors = text.expand(x.shape[0], -1, -1)
        if self.domain is not None:
            anchors = torch.cat([anchors, self.domain(x)], dim=1)
        for block in self.blocks:
            x, attn = block(x, anchors)
        weights = attn.max(dim=-1).values
        weights = weights / weights.sum(1, keepdim=True).clamp(min=1e-6)
        return (weights[..., None] * x).sum(1), weights, attn

    def forward_train(
        self, model: CLIPReID, feats: ImageFeatures, pids: Optional[torch.Tensor] = None
    ) -> dict[str, torch.Tensor]:
        if not (self.training and self.head_active):
            return {}
        text = self.text_anchors(model)
        local, _, _ = self.aggregate(model, feats, text)
        return {"local": local, "local_logits": self.classifier(self.neck(local)), "text_anchors": text}

    def stage2_losses(self, out: ReIDOutput, pids: torch.Tensor, cfg: Stage2Config) -> dict[str, torch.Tensor]:
        if "local" not in out.extras:
            return {}
        return {
            "local_id": id_loss(out.extras["local_logits"].float(), pids, cfg.label_smoothing),
            "local_triplet": batch_hard_triplet(out.extras["local"].float(), pids, cfg.margin),
            "anchor_div": self.cfg.lambda_div * anchor_diversity(out.extras["text_anchors"]),
        }

    def infer(self, model: CLIPReID, feats: ImageFeatures) -> Inference:
        local, _, _ = self.aggregate(model, feats)
        return Inference(fuse([local, feats.global_feat, feats.proj_feat], self.cfg.fusion_weights))

    def embedding_dim(self, model: CLIPReID) -> int:
        return sum(self._dims)
