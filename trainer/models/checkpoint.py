"""The checkpoint contract: one file format, one loader, used by trainer, export and edge.

A checkpoint is a ``torch.save``'d dict::

    format_version  int (CHECKPOINT_VERSION)
    method          str, e.g. "baseline"
    model_config    dict (ModelConfig, JSON-able)
    state_dict      model weights
    num_classes     int   (training identities)
    num_cameras     int
    text_features   [num_classes, E] float tensor or None (frozen stage-1 text features)
    train_meta      dict  (dataset, epochs, metrics, ...)

Resumable training state (optimizer, scheduler, RNG) lives in a separate ``*.state.pt`` file
written next to it by the engine, so deployable checkpoints stay small.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from trainer.config import ModelConfig
from trainer.models.reid import CLIPReID, build_model

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("format_version", "method", "model_config", "state_dict", "num_classes", "num_cameras")


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, malformed or does not fit its model."""


@dataclass
class LoadedCheckpoint:
    model: CLIPReID
    model_config: ModelConfig
    method: str
    num_classes: int
    num_cameras: int
    text_features: Optional[torch.Tensor]
    train_meta: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    model: CLIPReID,
    model_config: ModelConfig,
    num_cameras: int,
    text_features: Optional[torch.Tensor] = None,
    train_meta: Optional[dict[str, Any]] = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": CHECKPOINT_VERSION,
        "method": model_config.method.name,
        "model_config": model_config.model_dump(mode="json"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "num_classes": model.num_classes,
        "num_cameras": num_cameras,
        "text_features": None if text_features is None else text_features.detach().cpu(),
        "train_meta": train_meta or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the path
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a clipreid-edge checkpoint (got {type(payload).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a clipreid-edge checkpoint, missing keys {missing}")
    if payload["format_version"] > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {payload['format_version']} is newer than this code ({CHECKPOINT_VERSION})"
        )
    return payload


def _upgrade_model_config(data: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints written before the method registry stored every method's section; only the
    named method's section is a valid field now, so the others (defaults, unused) are dropped."""
    from trainer.methods import method_names

    method = data.get("method")
    if not isinstance(method, dict):
        return data
    name = method.get("name", "baseline")
    kept = {k: v for k, v in method.items() if k == name or k not in method_names()}
    return {**data, "method": kept}


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model a checkpoint describes and load its weights (strictly, loudly)."""
    payload = read_checkpoint(path)
    cfg = ModelConfig.model_validate(_upgrade_model_config(payload["model_config"]))
    model = build_model(cfg, payload["num_classes"], payload["num_cameras"], load_pretrained=False)
    result = model.load_state_dict(payload["state_dict"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: weights do not fit the model in its config; "
            f"missing {result.missing_keys[:8]}, unexpected {result.unexpected_keys[:8]}"
        )
    model.to(device).eval()
    return LoadedCheckpoint(
        model=model,
        model_config=cfg,
        method=payload["method"],
        num_classes=payload["num_classes"],
        num_cameras=payload["num_cameras"],
        text_features=payload.get("text_features"),
        train_meta=payload.get("train_meta", {}),
    )
