"""Building CLIP through open_clip and loading its pretrained weights from a local file.

Architectures come from open_clip's own configs (``ViT-B-16``, ``RN50``, ...) or from the small
JSON files bundled in ``trainer/clip/configs`` (``tiny-vit``, ``tiny-rn``) for tests and CPU
demos. Weights are never downloaded: ``pretrained`` is a path to an OpenAI TorchScript archive
(``ViT-B-16.pt``, ``RN50.pt``) or an open_clip state dict (``.pt``/``.bin``/``.safetensors``).
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import Optional

import open_clip
import torch
from open_clip.model import CLIP

log = logging.getLogger(__name__)

BUNDLED_CONFIGS = Path(__file__).parent / "configs"

# Buffers present in OpenAI archives that open_clip's CLIP does not keep.
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


class PretrainedWeightsError(RuntimeError):
    """A pretrained-weights file that is missing or does not fit the architecture."""


def clip_model_config(name: str) -> dict:
    """Architecture dict for ``name``: a bundled JSON first, then open_clip's registry."""
    bundled = BUNDLED_CONFIGS / f"{name}.json"
    if bundled.is_file():
        return json.loads(bundled.read_text())
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        known = sorted(p.stem for p in BUNDLED_CONFIGS.glob("*.json"))
        raise ValueError(f"unknown CLIP architecture {name!r}: not bundled ({known}) nor an open_clip model name")
    return cfg


def build_clip(name: str, quick_gelu: bool = False, pretrained: Optional[Path] = None) -> CLIP:
    """Create the CLIP model ``name``; load ``pretrained`` weights when given (loudly)."""
    cfg = dict(clip_model_config(name))
    cfg.pop("custom_text", None)
    model = CLIP(**cfg, quick_gelu=quick_gelu)
    if pretrained is not None:
        load_clip_weights(model, Path(pretrained))
    return model


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def read_clip_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a CLIP weights file, whichever of the usual formats it is in."""
    if not path.is_file():
        raise PretrainedWeightsError(f"pretrained weights not found: {path}")
    state: object  # whatever the file holds; checked to be a state dict below
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif _is_torchscript(path):
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the path
        raise PretrainedWeightsError(f"cannot read pretrained weights {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for key in _OPENAI_EXTRA_KEYS:
        state.pop(key, None)
    return dict(state)


def load_clip_weights(model: CLIP, path: Path) -> None:
    """Load ``path`` into ``model``; any missing, unexpected or mis-shaped key is an error."""
    state = read_clip_state_dict(path)
    own = model.state_dict()
    if "logit_scale" in state and state["logit_scale"].ndim != own["logit_scale"].ndim:
        state["logit_scale"] = state["logit_scale"].reshape(own["logit_scale"].shape)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or mismatched:
        parts = [f"pretrained weights {path} do not fit the architecture:"]
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"  {label}: {shown}")
        raise PretrainedWeightsError("\n".join(parts))
    model.load_state_dict(state, strict=True)
    log.info("loaded CLIP weights from %s (%d tensors)", path, len(state))
