"""RGANet: region generation from CLIP text prototypes + region assessment (shared/papers/rganet.txt).

Region generation (RGM): one prompt per body region ("A photo of the X X X X head of a
person.", shared learnable context tokens) plus a background prompt, encoded by the frozen text
encoder, are the region prototypes. The final-block patch tokens, projected into CLIP's joint
space (``ln_post`` then ``proj``, as CLIP's dense features are read), are compared to the
prototypes; a softmax over regions gives soft masks, and mask-weighted pooling of the patch
tokens gives one feature per region.

Region assessment (RAM): each region's confidence in [0, 1] is ``visibility * quality``.
``visibility`` is the share of patches the region's mask covers relative to its usual share in
training (clipped at 1): a region hidden behind an occluder loses its patches to the background
prototype. ``quality`` comes from a small assessor that reads the region feature and its share,
trained (BCE) towards the product of the paper's two indicators, which need labels and so exist
only in training:

- discrimination-aware: the region classifier's log-probability of the true identity above
  chance, relative to the global classifier's (clipped to [0, 1]): a region that identifies the
  person as well as the whole image does scores 1, one that carries no identity evidence 0;
- invariance-aware: how much closer the region feature is to a running average of the same
  identity's feature for that region than to the average identity's (features centred on the
  running mean over all identities; clipped to [0, 1]). A feature every identity shares, such
  as an occluder or a blank, is as consistent with all identities as with its own: it scores 0.

An occluded region carries another object's feature: it neither predicts its identity nor looks
like the identity's usual region, so both indicators fall and the assessor learns to score it low.
Each region's ID loss is weighted by its (detached) confidence, so occluded regions teach less,
and each region feature also gets a batch-hard triplet loss: region features are compared by
cosine at test time, and without a metric loss they identify people poorly (tiny CPU setup:
matching with parts 13.5 mAP without it, 34.7 with it; see README).

Where the paper is silent: an optional learnable per-row bias on the mask logits
(``spatial_prior``, initialised so regions are ordered top to bottom) keeps regions in place when
CLIP's text carries no meaning (tiny, randomly initialised models: the tiny recipe turns it
on). It is off by default and in the full-size recipes, where the regions must come from the
text prototypes alone, as the paper has them: with it on, regions become horizontal stripes
whatever the text says. Region features stay in the encoder width; inference returns the
baseline global feature plus the region features and confidences, and
:func:`core.embeddings.similarity` weighs each region's cosine by the product of the two
images' confidences, so a region counts only where both images show it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from core.configio import StrictModel
from trainer.clip.image_encoders import ImageEncoder, ImageFeatures, ReIDViT
from trainer.clip.text import SharedContextPrompts, TextEncoder
from trainer.losses import batch_hard_triplet
from trainer.methods.base import Inference, Method
from trainer.methods.registry import register_method

if TYPE_CHECKING:  # pragma: no cover
    from trainer.config import Stage2Config
    from trainer.models.reid import CLIPReID, ReIDOutput


def row_prior(num_regions: int, rows: int, sharpness: float = 4.0) -> torch.Tensor:
    """[num_regions + 1, rows] initial mask-logit bias: region r centred on its band; background flat."""
    centres = (torch.arange(num_regions, dtype=torch.float32) + 0.5) / num_regions
    pos = (torch.arange(rows, dtype=torch.float32) + 0.5) / rows
    bias = -sharpness * ((pos[None] - centres[:, None]) * num_regions) ** 2 / 4
    return torch.cat([bias, torch.full((1, rows), float(bias.max(0).values.mean()))])


def gather_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` [n, ...] of every DDP rank, concatenated in rank order (itself when not distributed).

    RGANet's running statistics are buffers updated during training; DDP broadcasts rank 0's
    buffers before every forward, so an update made from one rank's batch alone would be
    overwritten on the others (and ranks >= 1 would never contribute). Updating every rank
    from the same gathered batch keeps them equal, and makes the broadcast a no-op.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    t = t.detach().contiguous()
    sizes = [torch.zeros(1, dtype=torch.long, device=t.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([len(t)], device=t.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.cat([t, t.new_zeros(longest - len(t), *t.shape[1:])]) if len(t) < longest else t
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(n.item())] for part, n in zip(parts, sizes)])


class RegionAssessor(nn.Module):
    """(centred region feature, patch share) -> quality in [0, 1]."""

    def __init__(self, dim: int, num_regions: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.region_bias = nn.Parameter(torch.zeros(num_regions))

    def forward(self, region_feats: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
        x = torch.cat([F.normalize(region_feats, dim=-1), share[..., None] * region_feats.shape[1]], dim=-1)
        return torch.sigmoid(self.net(x).squeeze(-1) + self.region_bias)


class RGANetConfig(StrictModel):
    """RGANet: body regions from text prototypes, each with a confidence."""

    regions: list[str] = Field(default_factory=lambda: ["head", "upper body", "lower body", "feet"], min_length=1)
    template: str = Field(
        "A photo of the {ctx} {region} of a person.",
        description="{ctx}: shared learnable tokens; {region}: the region phrase",
    )
    n_ctx: int = Field(4, ge=1)
    temperature: float = Field(0.1, gt=0, description="softmax temperature of patch-to-prototype similarity")
    spatial_prior: bool = Field(
        False,
        description="add a learnable per-row bias (regions ordered top to bottom) to the mask logits; for "
        "random-init text only (tiny models): with it, regions are stripes whatever the text prototypes say",
    )
    region_id_weight: float = Field(0.25, ge=0, description="weight of each region's ID loss")
    region_triplet_weight: float = Field(
        1.0, ge=0, description="weight of the regions' batch-hard triplet loss (mean over regions)"
    )
    confidence_weight: float = Field(1.0, ge=0, description="weight of the region-assessment regression loss")
    centroid_momentum: float = Field(
        0.9, ge=0, lt=1, description="EMA of per-identity region centroids (invariance indicator)"
    )


@register_method("rganet", RGANetConfig, backbone="vit")
class RGANet(Method):
    centroids: torch.Tensor  # buffers (register_buffer): per-identity region centroids, ...
    centroid_seen: torch.Tensor  # ... whether each identity has one yet,
    feature_mean: torch.Tensor  # ... the running mean region feature
    share_mean: torch.Tensor  # ... and the running mean patch share per region

    @classmethod
    def build(
        cls, section: RGANetConfig, image_encoder: ImageEncoder, text_encoder: TextEncoder, num_classes: int
    ) -> RGANet:
        return cls(section, image_encoder, num_classes)

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
        classifiers = [nn.Linear(dim, num_classes, bias=False) for _ in cfg.regions]
        for fc in classifiers:
            nn.init.normal_(fc.weight, std=0.001)
        self.classifiers = nn.ModuleList(classifiers)
        self.assessor = RegionAssessor(dim, self.num_parts)
        self.register_buffer("centroids", torch.zeros(num_classes, self.num_parts, dim))
        self.register_buffer("centroid_seen", torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer("feature_mean", torch.zeros(self.num_parts, dim))
        self.register_buffer("share_mean", torch.full((self.num_parts,), 1.0 / (self.num_parts + 1)))
        self._dim = dim
        self.prompts: Optional[SharedContextPrompts] = None

    def setup(self, model: CLIPReID) -> None:
        self.prompts = SharedContextPrompts(
            model.text_encoder,
            self.cfg.template.replace("{region}", "{phrase}"),
            [*self.cfg.regions, "background"],
            self.cfg.n_ctx,
        )

    def prototypes(self, model: CLIPReID) -> torch.Tensor:
        """[R + 1, E] normalised region (+ background) prototypes (constants in eval mode)."""
        if self.prompts is None:
            raise RuntimeError("RGANet.setup(model) has not run: no region prompts yet")
        return F.normalize(self.prompts(model.text_encoder).float(), dim=-1)

    def train_layers(self) -> tuple[int, ...]:
        return (self.last_block,)

    inference_layers = train_layers

    def frozen_parameter_names(self) -> set[str]:
        return super().frozen_parameter_names() | (set() if self.cfg.spatial_prior else {"prior"})

    def regions(self, model: CLIPReID, feats: ImageFeatures) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> region features [B, R, C], patch share per region [B, R], soft masks [B, N, R + 1]."""
        enc = model.image_encoder
        if not isinstance(enc, ReIDViT):  # refused at construction
            raise TypeError("RGANet reads patch tokens: use a ViT backbone")
        patches = enc.ln_post(feats.tokens[self.last_block][:, 1:])
        dense = F.normalize((patches @ enc.proj).float(), dim=-1)
        logits = dense @ self.prototypes(model).T / self.cfg.temperature
        if self.cfg.spatial_prior:
            logits = logits + self.prior.T.repeat_interleave(self.grid[1], dim=0)  # [N, R + 1], row-major patches
        masks = torch.softmax(logits, dim=-1)
        body = masks[..., : self.num_parts]
        feats_r = torch.einsum("bnr,bnc->brc", body, patches.float()) / body.sum(1)[..., None].clamp(min=1e-6)
        return feats_r, body.mean(1), masks

    def forward_train(
        self, model: CLIPReID, feats: ImageFeatures, pids: Optional[torch.Tensor] = None
    ) -> dict[str, torch.Tensor]:
        if not self.training:
            return {}
        region_feats, share, _ = self.regions(model, feats)
        with torch.no_grad():
            m = self.cfg.centroid_momentum
            self.share_mean.mul_(m).add_((1 - m) * gather_ranks(share.float()).mean(0))
        logits = torch.stack(
            [fc(bn(region_feats[:, r])) for r, (bn, fc) in enumerate(zip(self.necks, self.classifiers))], dim=1
        )
        return {
            "region_feats": region_feats,
            "region_logits": logits,
            "region_quality": self.assessor(region_feats - self.feature_mean, share),
            "region_share": share,
        }

    def confidence(self, quality: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
        visibility = (share / self.share_mean.clamp(min=1e-6)).clamp(0, 1)
        return quality * visibility

    @torch.no_grad()
    def indicators(
        self, region_feats: torch.Tensor, logits: torch.Tensor, global_logits: torch.Tensor, pids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(discrimination, invariance) [B, R] in [0, 1]; updates the running centroids from the
        batches of every rank (:func:`gather_ranks`)."""

        def log_p_true(lg: torch.Tensor) -> torch.Tensor:
            logp = torch.log_softmax(lg.float(), dim=-1)
            return logp.gather(-1, pids.view(-1, *([1] * (lg.dim() - 1))).expand(*lg.shape[:-1], 1)).squeeze(-1)

        chance = -math.log(logits.shape[-1])
        evidence = log_p_true(global_logits)[:, None] - chance
        discrimination = ((log_p_true(logits) - chance) / evidence.clamp(min=1e-3)).clamp(0, 1)
        feats = region_feats.float()
        all_feats, all_pids = gather_ranks(feats), gather_ranks(pids)
        m = self.cfg.centroid_momentum
        batch_mean = all_feats.mean(0)
        self.feature_mean.copy_(
            torch.where(self.centroid_seen.any(), m * self.feature_mean + (1 - m) * batch_mean, batch_mean)
        )
        centred = F.normalize(feats - self.feature_mean, dim=-1)  # the part every image shares says nothing of identity
        known = self.centroid_seen.nonzero().squeeze(1)
        if len(known) > 1:
            # cosine to the own identity's centroid beyond the average identity's: a feature every
            # identity shares (an occluder, a blank) is consistent with all of them, i.e. with none
            cos = torch.einsum("brc,krc->brk", centred, F.normalize(self.centroids[known], dim=-1))
            own = torch.where(
                self.centroid_seen[pids][:, None],
                (centred * F.normalize(self.centroids[pids], dim=-1)).sum(-1),
                cos.max(-1).values,
            )
            others = cos.mean(-1)
            invariance = ((own - others) / (1 - others).clamp(min=1e-6)).clamp(0, 1)
        else:
            invariance = torch.ones_like(discrimination)
        all_centred = F.normalize(all_feats - self.feature_mean, dim=-1)
        for pid in all_pids.unique():
            mean = all_centred[all_pids == pid].mean(0)
            self.centroids[pid] = torch.where(self.centroid_seen[pid], m * self.centroids[pid] + (1 - m) * mean, mean)
            self.centroid_seen[pid] = True
        return discrimination, invariance

    def stage2_losses(self, out: ReIDOutput, pids: torch.Tensor, cfg: Stage2Config) -> dict[str, torch.Tensor]:
        if "region_logits" not in out.extras:
            return {}
        x = out.extras
        disc, inv = self.indicators(x["region_feats"], x["region_logits"], out.logits, pids)
        quality = x["region_quality"].float()
        conf = self.confidence(quality.detach(), x["region_share"].detach())
        weight = conf / conf.mean().clamp(min=1e-6)
        per_region = torch.stack(
            [
                F.cross_entropy(
                    x["region_logits"][:, r].float(), pids, label_smoothing=cfg.label_smoothing, reduction="none"
                )
                for r in range(self.num_parts)
            ],
            dim=1,
        )
        triplet = torch.stack(
            [batch_hard_triplet(x["region_feats"][:, r].float(), pids, cfg.margin) for r in range(self.num_parts)]
        ).mean()
        return {
            "region_triplet": self.cfg.region_triplet_weight * triplet,
            "region_id": self.cfg.region_id_weight * (weight * per_region).mean(),
            "region_conf": self.cfg.confidence_weight
            * F.binary_cross_entropy(quality.clamp(1e-6, 1 - 1e-6), disc * inv),
        }

    def infer(self, model: CLIPReID, feats: ImageFeatures) -> Inference:
        region_feats, share, _ = self.regions(model, feats)
        base = torch.cat([feats.global_feat, feats.proj_feat], dim=1)
        return Inference(
            base, region_feats, self.confidence(self.assessor(region_feats - self.feature_mean, share), share)
        )

    def part_dim(self, model: CLIPReID) -> int:
        return self._dim
