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

Each module registers its method class and config section (:mod:`trainer.methods.registry`);
a new method is one new module here, nothing else. This package imports no torch until a
method is built, so ``trainer.config`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainer.methods.registry import MethodConfig, method_entry, method_names, register_method

if TYPE_CHECKING:  # pragma: no cover
    from trainer.clip.image_encoders import ImageEncoder
    from trainer.clip.text import TextEncoder
    from trainer.config import ModelConfig
    from trainer.methods.base import Method

__all__ = ["MethodConfig", "build_method", "method_entry", "method_names", "register_method"]


def build_method(cfg: ModelConfig, image_encoder: ImageEncoder, text_encoder: TextEncoder, num_classes: int) -> Method:
    """The method module a recipe names; ``build_model`` calls its ``setup`` once the model exists."""
    from trainer.methods.base import Method  # at run time: method_entry has imported torch already

    entry = method_entry(cfg.method.name)
    if not issubclass(entry.method, Method):  # register_method decorates Method subclasses only
        raise TypeError(f"method {entry.name!r}: {entry.method.__qualname__} is not a Method subclass")
    section = getattr(cfg.method, entry.name) if entry.section is not None else None
    return entry.method.build(section, image_encoder, text_encoder, num_classes)
