"""RGANet: region generation from CLIP text prototypes + region assessment (shared/papers/rganet.txt).

Region generation (RGM): one prompt per body region ("A photo of the X X X X head of a
person.", shared learnable context tokens) plus a background prompt, encoded by the frozen text
encoder, are the region prototypes. The final-block patch tokens, projected into CLIP's joint
space (``ln_post`` then ``proj``, as CLIP's dense features are read), are compared to the
prototypes; a softmax over regions gives soft masks, and mask-weighted pooling of the patch
tokens gives one feature per region.

Region assessment (RAM): each region gets a confidence in [0, 1] from a small assessor that reads
the region feature and the share of patches it covers. It is trained (BCE) towards the product
of the two indicators, which need labels and so exist only in training:

- discrimination-aware: the region classifier's probability of the true identity, relative to
  the image's most discriminative region (so the best region scores 1);
- invariance-aware: the cosine (clipped at 0) between the region feature and a running
  average of the same identity's feature for that region.

An occluded region carries another object's feature: it neither predicts its identity nor looks
like the identity's usual region, so both indicators fall and the assessor learns to score it low.
Each region's ID loss is weighted by its (detached) confidence, so occluded regions teach less.

Where the paper is silent: a learnable per-row bias on the mask logits (initialised so regions
are ordered top to bottom) keeps regions in place when CLIP's text semantics are weak (tiny or
randomly initialised models); region features stay in the encoder width; inference returns the
baseline global feature plus the region features and confidences, and
:func:`trainer.embeddings.similarity` weighs each region's cosine by the product of the two
images' confidences, so a region counts only where both images show it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import RGANetConfig
from trainer.methods.base import Inference, Method
from trainer.models.image_encoders import ImageFeatures, ReIDViT
from trainer.models.text import SharedContextPrompts

if TYPE_CHECKING:  # pragma: no cover
    from trainer.config import Stage2Config
    from trainer.models.reid import CLIPReID, ReIDOutput


def row_prior(num_regions: int, rows: int, sharpness: float = 4.0) -> torch.Tensor:
    """[num_regions + 1, rows] initial mask-logit bias: region r centred on its band; background flat."""
    centres = (torch.arange(num_regions, dtype=torch.float32) + 0.5) / num_regions
    pos = (torch.arange(rows, dtype=torch.float32) + 0.5) / rows
    bias = -sharpness * ((pos[None] - centres[:, None]) * num_regions) ** 2 / 4
    return torch.cat([bias, torch.full((1, rows), float(bias.max(0).values.mean()))])


class RegionAssessor(nn.Module):
    """(region feature, patch share) -> confidence in [0, 1]."""

    def __init__(self, dim: int, num_regions: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.region_bias = nn.Parameter(torch.zeros(num_regions))

    def forward(self, region_feats: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
        x = torch.cat([F.normalize(region_feats, dim=-1), share[..., None] * region_feats.shape[1]], dim=-1)
        return torch.sigmoid(self.net(x).squeeze(-1) + self.region_bias)


class RGANet(Method):
    name = "rganet"

    def __init__(self, cfg: RGANetConfig, encoder: nn.Module, num_classes: int) -> None:
        super().__init__()
        if not isinstance(encoder, ReIDViT):
            raise ValueError("RGANet reads patch tokens: use a ViT backbone")
        self.cfg = cfg
        self.num_parts = len(cfg.regions)
        dim = encoder.feature_dim
        self.last_block = encoder.num_blocks
        self.grid = encoder.grid
        self.prior = nn.Parameter(row_prior(self.num_parts, self.grid[0]), requires_grad=cfg.spatial_prior)
        self.necks = nn.ModuleList(nn.BatchNorm1d(dim) for _ in cfg.regions)
        for bn in self.necks:
            bn.bias.requires_grad_(False)
        self.classifiers = nn.ModuleList(nn.Linear(dim, num_classes, bias=False) for _ in cfg.regions)
        for fc in self.classifiers:
            nn.init.normal_(fc.weight, std=0.001)
        self.assessor = RegionAssessor(dim, self.num_parts)
        self.register_buffer("centroids", torch.zeros(num_classes, self.num_parts, dim))
        self.register_buffer("centroid_seen", torch.zeros(num_classes, dtype=torch.bool))
        self._dim = dim
        self.prompts: Optional[SharedContextPrompts] = None

    def setup(self, model: "CLIPReID") -> None:
        self.prompts = SharedContextPrompts(model.text_encoder, self.cfg.template.replace("{region}", "{phrase}"), [*self.cfg.regions, "background"], self.cfg.n_ctx)

    def prototypes(self, model: "CLIPReID") -> torch.Tensor:
        """[R + 1, E] normalised region (+ background) prototypes (constants in eval mode)."""
        return F.normalize(self.prompts(model.text_encoder).float(), dim=-1)

    def train_layers(self) -> tuple[int, ...]:
        return (self.last_block,)

    inference_layers = train_layers

    def frozen_parameter_names(self) -> set[str]:
        return super().frozen_parameter_names() | (set() if self.cfg.spatial_prior else {"prior"})

    def regions(self, model: "CLIPReID", feats: ImageFeatures) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> region features [B, R, C], patch share per region [B, R], soft masks [B, N, R + 1]."""
        enc = model.image_encoder
        patches = enc.ln_post(feats.tokens[self.last_block][:, 1:])
        dense = F.normalize((patches @ enc.proj).float(), dim=-1)
        logits = dense @ self.prototypes(model).T / self.cfg.temperature
        rows = self.prior.T.repeat_interleave(self.grid[1], dim=0)  # [N, R + 1], row-major patches
        masks = torch.softmax(logits + rows, dim=-1)
        body = masks[..., : self.num_parts]
        feats_r = torch.einsum("bnr,bnc->brc", body, patches.float()) / body.sum(1)[..., None].clamp(min=1e-6)
        return feats_r, body.mean(1), masks

    def forward_train(self, model: "CLIPReID", feats: ImageFeatures) -> dict[str, torch.Tensor]:
        if not self.training:
            return {}
        region_feats, share, _ = self.regions(model, feats)
        logits = torch.stack([fc(bn(region_feats[:, r])) for r, (bn, fc) in enumerate(zip(self.necks, self.classifiers))], dim=1)
        return {"region_feats": region_feats, "region_logits": logits, "region_conf": self.assessor(region_feats, share)}

    @torch.no_grad()
    def indicators(self, region_feats: torch.Tensor, logits: torch.Tensor, pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(discrimination, invariance) [B, R] in [0, 1]; updates the identity centroids."""
        p_true = torch.softmax(logits.float(), dim=-1).gather(-1, pids[:, None, None].expand(-1, logits.shape[1], 1)).squeeze(-1)
        discrimination = p_true / p_true.max(dim=1, keepdim=True).values.clamp(min=1e-12)
        feats = F.normalize(region_feats.float(), dim=-1)
        seen = self.centroid_seen[pids]
        centroid = torch.where(seen[:, None, None], self.centroids[pids], feats)
        invariance = (feats * F.normalize(centroid, dim=-1)).sum(-1).clamp(min=0)
        m = self.cfg.centroid_momentum
        for pid in pids.unique():
            batch_mean = feats[pids == pid].mean(0)
            old = self.centroids[pid]
            self.centroids[pid] = torch.where(self.centroid_seen[pid], m * old + (1 - m) * batch_mean, batch_mean)
            self.centroid_seen[pid] = True
        return discrimination, invariance

    def stage2_losses(self, out: "ReIDOutput", pids: torch.Tensor, cfg: "Stage2Config") -> dict[str, torch.Tensor]:
        if "region_logits" not in out.extras:
            return {}
        x = out.extras
        disc, inv = self.indicators(x["region_feats"], x["region_logits"], pids)
        conf = x["region_conf"].float()
        weight = conf.detach() / conf.detach().mean().clamp(min=1e-6)
        per_region = torch.stack([
            F.cross_entropy(x["region_logits"][:, r].float(), pids, label_smoothing=cfg.label_smoothing, reduction="none")
            for r in range(self.num_parts)
        ], dim=1)
        return {
            "region_id": self.cfg.region_id_weight * (weight * per_region).mean(),
            "region_conf": self.cfg.confidence_weight * F.binary_cross_entropy(conf.clamp(1e-6, 1 - 1e-6), disc * inv),
        }

    def infer(self, model: "CLIPReID", feats: ImageFeatures) -> Inference:
        region_feats, share, _ = self.regions(model, feats)
        base = torch.cat([feats.global_feat, feats.proj_feat], dim=1)
        return Inference(base, region_feats, self.assessor(region_feats, share))

    def part_dim(self, model: "CLIPReID") -> int:
        return self._dim
