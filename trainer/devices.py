"""Which torch device a run uses (``device: auto | cpu | cuda[:n]`` in a recipe).

Its own module, below the training engine, because the evaluation and robustness CLIs pick a
device too without running training (``trainer.eval`` must not import ``trainer.engine``, which
imports it).
"""

from __future__ import annotations

import torch


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device
