"""AG-ReID: attribute-guided prompts for occluded ReID (shared/papers/ag-reid.txt).

- The identity prompt becomes an *attribute* prompt: fixed words around learnable per-identity
  tokens, one slot per attribute (gender, hair, upper/lower clothing, shoes, bag). The learned
  tokens are the identity's attribute pseudo-labels.
- Stage 1: L_align = L_feat + lambda * L_attrA (Eq. 9). L_feat is the baseline's SupCon pair on
  the attribute prompt's text feature; the attribute encoder predicts the r tokens from the
  image feature and L_attrA = (1/r) sum_i sum_j (1 - cos(a_ij, v_ij)) (Eq. 8: summed over the
  batch's images, divided by r; the paper's negative cosine shifted by 1 per kept pair, which
  changes the value, not the gradient). The pseudo-labels v are *not* detached: as in Eq. 9 the
  alignment trains the attribute tokens as well as the encoder.
- Stage 2: the baseline losses + beta * L_attrG (Eq. 15), L_attrG = (1/r) sum_i sum_j D(i, j)
  (1 - cos(a_ij, v_ij)) (Eq. 14) with the noise mask D keeping pairs whose cosine exceeds gamma
  (Otsu over the batch's cosines on occluded data, a fixed percentile, or -1 for holistic data).
  With beta = 0.01 and a batch of 64 this is ~0.3-0.6 next to a stage-2 loss of ~7: a real
  term, not the ~0.02 a per-pair mean would give. The attribute encoder is frozen in stage 2 (choice: the
  paper leaves it open; frozen, it is a fixed guide the image features must satisfy instead of a
  second learner that can absorb the mismatch) and is training-only: inference is the baseline's.

Choices where the paper is silent: the encoder reads the projected image feature as one token
next to r learnable attribute queries, 4 pre-norm self-attention layers of width 256 and MLP
ratio 3 (2.9 M parameters at ViT-B/16 size, the paper's ~2.8 M), and writes the r tokens in the
text encoder's token-embedding width.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from core.configio import StrictModel
from trainer.clip.image_encoders import ImageEncoder, ImageFeatures
from trainer.clip.text import PromptLearner, TextEncoder
from trainer.methods.base import Method
from trainer.methods.registry import register_method

if TYPE_CHECKING:  # pragma: no cover
    from trainer.config import Stage2Config
    from trainer.models.reid import CLIPReID, ReIDOutput


def otsu_threshold(values: torch.Tensor) -> float:
    """Otsu's threshold over 1-D ``values``: the split maximising the between-class variance.

    Exact over the sorted sample (no histogram binning): class 0 is ``values <= t``. Returns the
    midpoint between the two classes' closest members.
    """
    x = values.detach().flatten().double().sort().values
    n = x.numel()
    if n < 2 or x[0] == x[-1]:
        return float(x[0]) if n else 0.0
    csum = x.cumsum(0)
    k = torch.arange(1, n, dtype=torch.float64)  # size of class 0 for splits after index k-1
    w0, w1 = k / n, (n - k) / n
    mu0 = csum[:-1] / k
    mu1 = (csum[-1] - csum[:-1]) / (n - k)
    between = w0 * w1 * (mu0 - mu1) ** 2
    between[x[1:] == x[:-1]] = -1  # a split must fall between distinct values
    best = int(between.argmax())
    return float((x[best] + x[best + 1]) / 2)


def noise_threshold(cosines: torch.Tensor, gamma: str | float) -> float:
    """gamma for the noise mask: ``otsu``, ``pNN`` (percentile of the batch) or a fixed number."""
    if isinstance(gamma, (int, float)):
        return float(gamma)
    if gamma == "otsu":
        return otsu_threshold(cosines)
    match = re.fullmatch(r"p(\d{1,2})", gamma)
    if not match:
        raise ValueError(f"unknown gamma {gamma!r}")
    return float(torch.quantile(cosines.detach().flatten().float(), int(match.group(1)) / 100))


def noise_mask(cosines: torch.Tensor, gamma: float) -> torch.Tensor:
    """D(i, j) = cos(a_ij, v_ij) > gamma: the (image, attribute) pairs L_attrG keeps."""
    return cosines > gamma


class AttributeEncoder(nn.Module):
    """Image feature [B, E] -> r predicted attribute tokens [B, r, W] (training only)."""

    def __init__(
        self,
        in_dim: int,
        token_dim: int,
        num_tokens: int,
        width: int = 256,
        layers: int = 4,
        heads: int = 4,
        mlp_ratio: float = 3.0,
    ) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.queries = nn.Parameter(torch.randn(num_tokens, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, int(width * mlp_ratio), dropout=0.0, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, token_dim)

    def forward(self, image_feats: torch.Tensor) -> torch.Tensor:
        b = image_feats.shape[0]
        x = torch.cat([self.inp(image_feats.float())[:, None], self.queries.expand(b, -1, -1)], dim=1)
        x = self.encoder(x)
        return self.out(self.norm(x[:, 1:]))


def attribute_alignment(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """AG-ReID Eqs. 8 / 14: ``(1/r) * sum over images i and tokens j of D(i, j) * (1 - cos)``.

    pred, target [n, r, W]; mask [n, r] (all pairs when None). Summed over the batch, as the
    paper writes it, so its weight relative to the other losses is the paper's lambda / beta.
    """
    cos = F.cosine_similarity(pred, target, dim=-1)
    per_pair = 1 - cos
    if mask is not None:
        per_pair = per_pair * mask.float()
    return per_pair.sum() / pred.shape[1]


# AG-ReID prompt-attribute templates; ``{slot}`` marks an identity's learnable attribute tokens.
ATTRIBUTE_TEMPLATES = {
    "full": (
        "A photo of a {gender} person with {hair} hair, wearing {upper} on top, {lower} below and {shoes} shoes, "
        "carrying {bag}."
    ),
    "clothing": "A photo of a person wearing {upper} on top, {lower} below and {shoes} shoes.",
    "occlusion": (
        "A photo of a {gender} person with {hair} hair, wearing {upper} and {lower}, partly hidden, carrying {bag}."
    ),
}


class AGReIDConfig(StrictModel):
    """AG-ReID: attribute prompts, attribute encoder, noise-masked attribute guidance."""

    template: str = Field(
        "full",
        description=f"a built-in template ({', '.join(ATTRIBUTE_TEMPLATES)}) or a template text with {{slot}} markers",
    )
    tokens_per_attribute: int = Field(1, ge=1, le=4, description="learnable tokens in each attribute slot")
    lambda_attr: float = Field(1.0, ge=0, description="stage 1: weight of L_attrA")
    beta: float = Field(0.01, ge=0, description="stage 2: weight of L_attrG")
    gamma: str | float = Field(
        "otsu",
        description="noise-mask threshold: otsu, p50, p75, p90, or a number (-1 keeps every pair: holistic data)",
    )
    encoder_layers: int = Field(4, ge=1, description="self-attention layers of the attribute encoder")
    encoder_width: int = Field(256, ge=16)
    encoder_heads: int = Field(4, ge=1)
    encoder_mlp_ratio: float = Field(3.0, gt=0)

    def template_text(self) -> str:
        return ATTRIBUTE_TEMPLATES.get(self.template, self.template)

    @model_validator(mode="after")
    def _check(self) -> AGReIDConfig:
        if isinstance(self.gamma, str) and self.gamma not in ("otsu", "p50", "p75", "p90"):
            raise ValueError(f"gamma must be otsu, p50, p75, p90 or a number, got {self.gamma!r}")
        if "{" not in self.template_text():
            raise ValueError(
                f"attribute template {self.template!r} is neither built in ({list(ATTRIBUTE_TEMPLATES)}) nor has "
                f"{{slot}} markers"
            )
        return self


@register_method("agreid", AGReIDConfig)
class AGReID(Method):
    @classmethod
    def build(
        cls, section: AGReIDConfig, image_encoder: ImageEncoder, text_encoder: TextEncoder, num_classes: int
    ) -> AGReID:
        return cls(section, image_encoder.proj_dim, text_encoder.width)

    def __init__(self, cfg: AGReIDConfig, proj_dim: int, token_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.slots = {name: cfg.tokens_per_attribute for name in re.findall(r"\{(\w+)\}", cfg.template_text())}
        self.num_tokens = sum(self.slots.values())
        self.attribute_encoder = AttributeEncoder(
            proj_dim,
            token_dim,
            self.num_tokens,
            cfg.encoder_width,
            cfg.encoder_layers,
            cfg.encoder_heads,
            cfg.encoder_mlp_ratio,
        )
        self.register_buffer("pseudo_labels", torch.zeros(0), persistent=False)
        self.last_gamma = float("nan")

    def setup(self, model: CLIPReID) -> None:
        model.prompt_learner = PromptLearner(
            model.text_encoder, model.num_classes, self.cfg.template_text(), slots=self.slots
        )

    def stage1_parameters(self) -> list[nn.Parameter]:
        return list(self.attribute_encoder.parameters())

    def stage2_parameters(self) -> list[nn.Parameter]:
        return []  # the attribute encoder is a fixed guide in stage 2

    def stage1_losses(
        self, model: CLIPReID, image_feats: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        pred = self.attribute_encoder(image_feats)
        target = model.prompt_learner.ctx[labels].float()  # Eq. 9 trains the tokens too
        return {"attrA": self.cfg.lambda_attr * attribute_alignment(pred, target)}

    def begin_stage2(self, model: CLIPReID, text_features: torch.Tensor) -> None:
        self.pseudo_labels = model.prompt_learner.ctx.detach().float().clone()

    def forward_train(
        self, model: CLIPReID, feats: ImageFeatures, pids: Optional[torch.Tensor] = None
    ) -> dict[str, torch.Tensor]:
        if not self.training or self.pseudo_labels.numel() == 0:
            return {}
        return {"attr_pred": self.attribute_encoder(feats.proj_feat)}

    def stage2_losses(self, out: ReIDOutput, pids: torch.Tensor, cfg: Stage2Config) -> dict[str, torch.Tensor]:
        if "attr_pred" not in out.extras:
            return {}
        pred, target = out.extras["attr_pred"].float(), self.pseudo_labels[pids]
        cos = F.cosine_similarity(pred, target, dim=-1)
        self.last_gamma = noise_threshold(cos, self.cfg.gamma)
        return {"attrG": self.cfg.beta * attribute_alignment(pred, target, noise_mask(cos.detach(), self.last_gamma))}
