"""Occlusion-robust methods that plug into the CLIP-ReID baseline (``model.method.name``).

=========  ==========================================  ============================
name       module                                      backbone
=========  ==========================================  ============================
baseline   :mod:`trainer.methods.base`                 ViT or ResNet
agreid     :mod:`trainer.methods.agreid` (AG-ReID)     ViT or ResNet
rganet     :mod:`trainer.methods.rganet` (RGANet)      ViT
saga       :mod:`trainer.methods.saga` (SAGA-ReID)     ViT
mscsa_tgi  :mod:`trainer.methods.mscsa_tgi`            ResNet (RN50)
=========  ==========================================  ============================
"""
from __future__ import annotations

from torch import nn

from trainer.config import ModelConfig
from trainer.methods.base import Inference, Method

__all__ = ["Inference", "Method", "build_method"]


def build_method(cfg: ModelConfig, image_encoder: nn.Module, text_encoder: nn.Module, num_classes: int) -> Method:
    """The method module a recipe names; ``build_model`` calls its ``setup`` once the model exists."""
    m = cfg.method
    if m.name == "baseline":
        return Method()
    if m.name == "agreid":
        from trainer.methods.agreid import AGReID

        return AGReID(m.agreid, image_encoder.proj_dim, text_encoder.width)
    if m.name == "rganet":
        from trainer.methods.rganet import RGANet

        return RGANet(m.rganet, image_encoder, num_classes)
    if m.name == "saga":
        from trainer.methods.saga import SAGA

        return SAGA(m.saga, image_encoder, text_encoder.output_dim, num_classes)
    from trainer.methods.mscsa_tgi import MSCSATGI

    return MSCSATGI(m.mscsa_tgi, image_encoder, text_encoder.output_dim)
