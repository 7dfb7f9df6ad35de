"""The seam every occlusion-robust method plugs into.

A method is a small ``nn.Module`` held by :class:`~trainer.models.reid.CLIPReID` as
``model.method``. The baseline (plain CLIP-ReID) is this class itself: every hook is a no-op or
the baseline's behaviour, and a method overrides only what it changes:

- :meth:`setup` once at build time (swap the prompt learner, hook into the image encoder);
- :meth:`begin_stage2` / :meth:`begin_method_stage` before stage 2 and before the method's own
  frozen-backbone stage, which runs after stage 2 (SAGA's head);
- :meth:`train_layers` / :meth:`inference_layers`: intermediate ViT blocks or ResNet stages the
  encoder must return;
- :meth:`forward_train` runs inside the model's forward (so DDP sees every parameter used) and
  returns extra tensors: logits, predicted tokens, region features, fused image-to-text logits;
- :meth:`stage1_losses` / :meth:`stage2_losses` turn those into named loss terms;
- :meth:`infer` is the inference contract: the embedding (and, for part-based methods, part
  features and confidences) that evaluation, export and the edge consume.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from trainer.methods.registry import register_method

if TYPE_CHECKING:  # pragma: no cover
    from trainer.clip.image_encoders import ImageEncoder, ImageFeatures
    from trainer.clip.text import TextEncoder
    from trainer.config import Stage2Config
    from trainer.models.reid import CLIPReID, ReIDOutput


@dataclass
class Inference:
    """What a model returns for a batch at test time (before L2 normalisation).

    embedding [B, D]; parts [B, P, Dp] and part_conf [B, P] in [0, 1] for part-based methods.
    """

    embedding: torch.Tensor
    parts: Optional[torch.Tensor] = None
    part_conf: Optional[torch.Tensor] = None

    def averaged_with(self, other: Inference) -> Inference:
        """Element-wise mean (test-time flip averaging)."""

        def mean(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if a is None or b is None else (a + b) / 2  # one model: both or neither

        return Inference(
            (self.embedding + other.embedding) / 2, mean(self.parts, other.parts), mean(self.part_conf, other.part_conf)
        )

    def normalized(self) -> Inference:
        """The embedding contract's unit vectors, in float32: the one place a model's outputs are
        L2-normalised. The torch path (:func:`trainer.models.reid.to_embeddings`) and the exported
        graph (:class:`export.wrapper.EmbeddingGraph`) both call it, so ONNX, TensorRT and PyTorch
        return the same vectors and nothing downstream normalises them again."""

        def unit(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if t is None else F.normalize(t.float(), dim=-1)

        return Inference(
            F.normalize(self.embedding.float(), dim=-1),
            unit(self.parts),
            None if self.part_conf is None else self.part_conf.float(),
        )


@register_method("baseline")
class Method(nn.Module):
    """Plain CLIP-ReID: test feature ``cat(global_feat, proj_feat)``, no extra losses.

    A method subclasses it, registers with :func:`~trainer.methods.registry.register_method`
    (which sets ``name``) and overrides :meth:`build` and the hooks it changes.
    """

    name: ClassVar[str] = "baseline"
    stage1_needs_images = False  # True: stage 1 runs the image encoder (its method modules train)
    num_parts = 0

    @classmethod
    def build(cls, section: Any, image_encoder: ImageEncoder, text_encoder: TextEncoder, num_classes: int) -> Method:
        """The method for a recipe: ``section`` is its config section (None for a method without
        one), built before the prompt learner exists (``setup`` follows)."""
        return cls()

    def setup(self, model: CLIPReID) -> None:
        """Called once by ``build_model`` after the baseline is built."""

    def train_layers(self) -> tuple[int, ...]:
        return ()

    def inference_layers(self) -> tuple[int, ...]:
        return ()

    def stage1_parameters(self) -> list[nn.Parameter]:
        """Method parameters trained in stage 1 next to the identity prompts."""
        return []

    def stage2_parameters(self) -> list[nn.Parameter]:
        """Method parameters trained with the image encoder (and alone in a frozen-backbone stage):
        all of the method's own, except those named in :meth:`frozen_parameter_names`."""
        frozen = self.frozen_parameter_names()
        return [p for name, p in self.named_parameters() if name not in frozen]

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters the method adds (randomly initialised): they get ``method.lr_factor``."""
        return list(self.parameters())

    def frozen_parameter_names(self) -> set[str]:
        """Own parameters that never train (BNNeck biases)."""
        return {name for name, _ in self.named_parameters() if re.search(r"(^|\.)necks?(\.\d+)?\.bias$", name)}

    def begin_stage2(self, model: CLIPReID, text_features: torch.Tensor) -> None:
        """Called with the frozen stage-1 text features [C, E] before stage 2 starts."""

    def begin_method_stage(self, model: CLIPReID) -> None:
        """Called before the method's frozen-backbone stage (after stage 2), also on resume."""

    def forward_train(
        self, model: CLIPReID, feats: ImageFeatures, pids: Optional[torch.Tensor] = None
    ) -> dict[str, torch.Tensor]:
        """``pids`` [B]: the batch's identities when the method needs them inside the forward."""
        return {}

    def stage1_losses(
        self, model: CLIPReID, image_feats: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {}

    def stage2_losses(self, out: ReIDOutput, pids: torch.Tensor, cfg: Stage2Config) -> dict[str, torch.Tensor]:
        return {}

    def infer(self, model: CLIPReID, feats: ImageFeatures) -> Inference:
        return Inference(torch.cat([feats.global_feat, feats.proj_feat], dim=1))

    def embedding_dim(self, model: CLIPReID) -> int:
        return model.image_encoder.feature_dim + model.image_encoder.proj_dim

    def part_dim(self, model: CLIPReID) -> int:
        return 0
