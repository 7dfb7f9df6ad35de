"""CLIP-ReID: the baseline model every method plugs into.

One ``nn.Module`` holds the image encoder (trained in stage 2), the frozen text encoder, the
identity prompt learner (trained in stage 1), and the BNNeck + ID classifiers.

The occlusion-robust method (``model.method``, see :mod:`trainer.methods`) plugs in through
hooks; the baseline's method is a no-op.

Inference contract (what export and the edge consume): :meth:`CLIPReID.infer` returns
:class:`~trainer.methods.base.Inference` (embedding [B, D] before normalisation, plus part
features and confidences for part-based methods); the baseline's embedding is
``cat(global_feat, proj_feat)`` before BNNeck. :meth:`CLIPReID.embed` wraps it into
:class:`core.embeddings.Embeddings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import torch
from open_clip.modified_resnet import ModifiedResNet
from torch import nn

from core.embeddings import Embeddings
from trainer.clip.factory import build_clip
from trainer.clip.image_encoders import ImageEncoder, ImageFeatures, ReIDResNet, ReIDViT
from trainer.clip.text import PromptLearner, TextEncoder
from trainer.config import ModelConfig
from trainer.methods import build_method
from trainer.methods.base import Inference, Method


@dataclass
class ReIDOutput:
    """What a training forward returns; ``features`` keeps the encoder's tokens/maps for methods."""

    features: ImageFeatures
    logits: torch.Tensor  # [B, num_classes] from the BNNeck'd global feature
    proj_logits: torch.Tensor  # [B, num_classes] from the BNNeck'd projected feature
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # the method's training tensors

    @property
    def global_feat(self) -> torch.Tensor:
        return self.features.global_feat

    @property
    def proj_feat(self) -> torch.Tensor:
        return self.features.proj_feat


def _bnneck(dim: int) -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(dim)
    bn.bias.requires_grad_(False)  # BNNeck: no shift, as in BoT / CLIP-ReID
    return bn


def _classifier(dim: int, num_classes: int) -> nn.Linear:
    fc = nn.Linear(dim, num_classes, bias=False)
    nn.init.normal_(fc.weight, std=0.001)
    return fc


class CLIPReID(nn.Module):
    def __init__(
        self,
        image_encoder: ImageEncoder,
        text_encoder: TextEncoder,
        prompt_learner: PromptLearner,
        logit_scale: nn.Parameter,
        method: Optional[Method] = None,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.prompt_learner = prompt_learner
        self.logit_scale = logit_scale
        num_classes = prompt_learner.num_classes
        self.bottleneck = _bnneck(image_encoder.feature_dim)
        self.bottleneck_proj = _bnneck(image_encoder.proj_dim)
        self.classifier = _classifier(image_encoder.feature_dim, num_classes)
        self.classifier_proj = _classifier(image_encoder.proj_dim, num_classes)
        self.return_layers: tuple[int, ...] = ()
        self.method = method if method is not None else Method()

    @property
    def num_classes(self) -> int:
        return self.prompt_learner.num_classes

    @property
    def embedding_dim(self) -> int:
        return self.method.embedding_dim(self)

    @property
    def num_parts(self) -> int:
        return self.method.num_parts

    def forward(
        self,
        images: torch.Tensor,
        camids: Optional[torch.Tensor] = None,
        return_layers: Sequence[int] = (),
        pids: Optional[torch.Tensor] = None,
    ) -> ReIDOutput:
        layers = tuple(sorted(set(return_layers) | set(self.return_layers) | set(self.method.train_layers())))
        feats = self.image_encoder(images, camids, layers)
        logits = self.classifier(self.bottleneck(feats.global_feat))
        proj_logits = self.classifier_proj(self.bottleneck_proj(feats.proj_feat))
        extras = self.method.forward_train(self, feats, pids)
        return ReIDOutput(features=feats, logits=logits, proj_logits=proj_logits, extras=extras)

    def infer(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None) -> Inference:
        """[B, 3, H, W] normalised images -> the method's test-time outputs (not normalised)."""
        feats = self.image_encoder(images, camids, self.method.inference_layers())
        return self.method.infer(self, feats)

    def encode(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, 3, H, W] normalised images -> [B, D] test features (not normalised)."""
        return self.infer(images, camids).embedding

    @torch.no_grad()
    def embed(self, images: torch.Tensor, camids: Optional[torch.Tensor] = None) -> Embeddings:
        return to_embeddings(self.infer(images, camids))

    def text_features(self, labels: torch.Tensor) -> torch.Tensor:
        """Identity prompts' text features [N, E] (unnormalised), differentiable w.r.t. ``ctx``."""
        prompts, tokens = self.prompt_learner(labels)
        return self.text_encoder(prompts, tokens)

    @torch.no_grad()
    def all_text_features(self, batch_size: int = 64) -> torch.Tensor:
        device = self.prompt_learner.ctx.device
        labels = torch.arange(self.num_classes, device=device)
        return torch.cat([self.text_features(chunk) for chunk in labels.split(batch_size)])

    def image_parameters(self) -> list[nn.Parameter]:
        """Everything stage 2 trains: encoder, necks, classifiers, the method's modules."""
        modules = [self.image_encoder, self.bottleneck, self.bottleneck_proj, self.classifier, self.classifier_proj]
        own = [p for m in modules for p in m.parameters()]
        seen = {id(p) for p in own}
        return own + [p for p in self.method.stage2_parameters() if id(p) not in seen]


def to_embeddings(result: Inference) -> Embeddings:
    """Torch inference outputs -> the numpy :class:`Embeddings` contract (normalised)."""

    def numpy(t: Optional[torch.Tensor]):
        return None if t is None else t.detach().float().cpu().numpy()

    unit = result.normalized()
    return Embeddings(numpy(unit.embedding), numpy(unit.parts), numpy(unit.part_conf))


def build_image_encoder(visual: nn.Module, cfg: ModelConfig, num_cameras: int) -> ImageEncoder:
    if isinstance(visual, ModifiedResNet):
        if cfg.sie.enabled:
            raise ValueError("SIE (camera embedding) is only defined for ViT backbones")
        return ReIDResNet(visual, cfg.image_size, cfg.last_stride)
    return ReIDViT(
        visual,
        cfg.image_size,
        cfg.patch_stride,
        num_cameras=num_cameras if cfg.sie.enabled else 0,
        sie_coefficient=cfg.sie.coefficient,
        sie_mode=cfg.sie.mode,
    )


def build_model(cfg: ModelConfig, num_classes: int, num_cameras: int, load_pretrained: bool = True) -> CLIPReID:
    """Build the model a recipe describes; ``load_pretrained=False`` when a checkpoint follows."""
    backbone = cfg.backbone
    clip = build_clip(backbone.name, backbone.quick_gelu, backbone.pretrained if load_pretrained else None)
    text_encoder = TextEncoder(clip)
    image_encoder = build_image_encoder(clip.visual, cfg, num_cameras)
    prompts = PromptLearner(text_encoder, num_classes, cfg.prompt_template, cfg.n_ctx)
    model = CLIPReID(
        image_encoder,
        text_encoder,
        prompts,
        clip.logit_scale,
        build_method(cfg, image_encoder, text_encoder, num_classes),
    )
    model.return_layers = tuple(cfg.intermediate_layers)
    model.method.setup(model)
    return model
