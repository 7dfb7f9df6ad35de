"""SAGA-ReID: local aggregation of intermediate patch tokens aligned with text-space anchors
(shared/papers/saga-reid.txt and the authors' public release).

- Anchors live in CLIP's text embedding space, with no per-image text: K text anchors are
  frozen phrases (body parts, clothing, accessories; 24 by default) with shared learnable
  context tokens, passed through the frozen text encoder and a linear map to the visual width;
  a few domain anchors are generated from the image's mean patch token.
- The patch tokens of an intermediate block (9 of 12 by default) are refined by cross-attention
  blocks (queries: patch tokens; keys/values: anchors; residual attention then residual MLP).
  A learnable *null* anchor with a zero value lets a patch support no anchor; a patch's support
  is the attention it does not give the null anchor, so corrupted or missing regions (which
  match no body-part or clothing anchor) weigh little in the support-weighted aggregation that
  replaces [CLS].
- Identity feature: ``cat(w_l * n(local), w_c * n(cls), w_p * n(proj))`` with ``n`` = L2
  normalisation and weights 2 / 0.2 / 0.05 as in the release, so the cosine of two fused
  features is their weighted per-part cosine average, dominated by the local aggregate.
- Training: the local aggregate gets its own BNNeck, classifier, ID and triplet losses next to
  the baseline's. The recipe's ``method.frozen_backbone_epochs`` trains the anchors and the
  refinement alone on the frozen backbone before joint fine-tuning.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import SAGAConfig
from trainer.losses import batch_hard_triplet, id_loss
from trainer.methods.base import Inference, Method
from trainer.models.image_encoders import ImageFeatures, ReIDViT
from trainer.models.text import SharedContextPrompts

if TYPE_CHECKING:  # pragma: no cover
    from trainer.config import Stage2Config
    from trainer.models.reid import CLIPReID, ReIDOutput


class AnchorCrossAttention(nn.Module):
    """Patch tokens attend to anchors plus a null anchor (learnable key, zero value)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"SAGA: width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.null_key = nn.Parameter(torch.randn(dim) * 0.02)

    def forward(self, x: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, N, C], anchors [B, K, C] -> (update [B, N, C], attention [B, N, K + 1], null last)."""
        b, n, c = x.shape
        h, d = self.heads, c // self.heads
        q = self.q(x).view(b, n, h, d).transpose(1, 2)
        k = torch.cat([self.k(anchors), self.null_key.expand(b, 1, c)], dim=1).view(b, -1, h, d).transpose(1, 2)
        v = torch.cat([self.v(anchors), anchors.new_zeros(b, 1, c)], dim=1).view(b, -1, h, d).transpose(1, 2)
        attn = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)  # [B, h, N, K + 1]
        update = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.out(update), attn.mean(1)


class RefinementBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = AnchorCrossAttention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        update, attn = self.attn(self.norm_q(x), self.norm_kv(anchors))
        x = x + update
        return x + self.mlp(self.norm_mlp(x)), attn


class SAGA(Method):
    name = "saga"

    def __init__(self, cfg: SAGAConfig, encoder: nn.Module, text_dim: int, num_classes: int) -> None:
        super().__init__()
        if not isinstance(encoder, ReIDViT):
            raise ValueError("SAGA refines ViT patch tokens: use a ViT backbone")
        if not 1 <= cfg.layer <= encoder.num_blocks:
            raise ValueError(f"SAGA layer {cfg.layer} is outside the backbone's 1..{encoder.num_blocks} blocks")
        self.cfg = cfg
        dim = encoder.feature_dim
        self.anchor_map = nn.Linear(text_dim, dim)
        self.domain = nn.Linear(dim, cfg.domain_anchors * dim) if cfg.domain_anchors else None
        self.blocks = nn.ModuleList(RefinementBlock(dim, cfg.heads) for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(dim)
        self.neck = nn.BatchNorm1d(dim)
        self.neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)
        self._dims = (dim, dim, encoder.proj_dim)
        self.prompts: Optional[SharedContextPrompts] = None

    def setup(self, model: "CLIPReID") -> None:
        self.prompts = SharedContextPrompts(model.text_encoder, self.cfg.template, self.cfg.phrases, self.cfg.n_ctx)

    def text_anchors(self, model: "CLIPReID") -> torch.Tensor:
        """[K, C] phrase anchors in the visual width (the text side is a constant in eval mode)."""
        return self.anchor_map(self.prompts(model.text_encoder).float())

    def train_layers(self) -> tuple[int, ...]:
        return (self.cfg.layer,)

    inference_layers = train_layers

    def aggregate(self, model: "CLIPReID", feats: ImageFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (local identity feature [B, C], patch support [B, N] in [0, 1])."""
        x = feats.tokens[self.cfg.layer][:, 1:].float()
        anchors = self.text_anchors(model).expand(x.shape[0], -1, -1)
        if self.domain is not None:
            anchors = torch.cat([anchors, self.domain(x.mean(1)).view(x.shape[0], self.cfg.domain_anchors, -1)], dim=1)
        for block in self.blocks:
            x, attn = block(x, anchors)
        support = 1 - attn[..., -1]
        weights = support / support.sum(1, keepdim=True).clamp(min=1e-6)
        return self.norm((weights[..., None] * x).sum(1)), support

    def forward_train(self, model: "CLIPReID", feats: ImageFeatures) -> dict[str, torch.Tensor]:
        if not self.training:
            return {}
        local, _ = self.aggregate(model, feats)
        return {"local": local, "local_logits": self.classifier(self.neck(local))}

    def stage2_losses(self, out: "ReIDOutput", pids: torch.Tensor, cfg: "Stage2Config") -> dict[str, torch.Tensor]:
        if "local" not in out.extras:
            return {}
        return {
            "local_id": cfg.id_weight * id_loss(out.extras["local_logits"].float(), pids, cfg.label_smoothing),
            "local_triplet": cfg.triplet_weight * batch_hard_triplet(out.extras["local"].float(), pids, cfg.margin),
        }

    def infer(self, model: "CLIPReID", feats: ImageFeatures) -> Inference:
        local, _ = self.aggregate(model, feats)
        w_l, w_c, w_p = self.cfg.fusion_weights
        parts = [w_l * F.normalize(local, dim=1), w_c * F.normalize(feats.global_feat.float(), dim=1), w_p * F.normalize(feats.proj_feat.float(), dim=1)]
        return Inference(torch.cat(parts, dim=1))

    def embedding_dim(self, model: "CLIPReID") -> int:
        return sum(self._dims)
