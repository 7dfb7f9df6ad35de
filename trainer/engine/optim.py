"""Optimisers (bias lr factor, bias weight decay) and epoch-based warm-up schedules, as the
official CLIP-ReID code: every parameter decays, biases with ``weight_decay_bias`` (official:
equal to ``weight_decay``), norms like weights; schedules are stepped at the start of each epoch,
so 0-based epoch ``i`` runs at scheduler time ``t = i + 1``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Optional

import torch
from torch import nn

from trainer.config import OptimConfig


def build_optimizer(
    named_params: Iterable[tuple[str, nn.Parameter]],
    cfg: OptimConfig,
    lr_factor: Optional[Callable[[nn.Parameter], float]] = None,
) -> torch.optim.Optimizer:
    """One group per parameter; ``lr_factor(param)`` scales a parameter's learning rate (a
    method's new modules learn faster than the pretrained backbone)."""
    groups = []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        is_bias = name.endswith(".bias")
        lr = cfg.lr * (cfg.bias_lr_factor if is_bias else 1.0) * (lr_factor(p) if lr_factor else 1.0)
        decay = cfg.bias_weight_decay() if is_bias else cfg.weight_decay
        groups.append({"params": [p], "lr": lr, "weight_decay": decay})
    if not groups:
        raise ValueError("nothing to optimise: every parameter is frozen")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.Adam(groups, lr=cfg.lr)


def lr_factor(epoch: int, cfg: OptimConfig) -> float:
    """Multiplier of the base lr during ``epoch`` (0-based): linear warm-up, then cosine or step.

    The official schedulers are stepped before each epoch's batches with 1-based epochs, so
    epoch ``i`` runs at ``t = i + 1``: warm-up ``f + (1 - f) * t / warmup`` while
    ``t < warmup`` (``WarmupMultiStepLR`` / timm ``CosineLRScheduler``), the step decay
    ``gamma ** #{m <= t}`` (``bisect_right``), and timm's cosine over ``t / epochs`` (no
    warm-up prefix).
    """
    t = epoch + 1
    if t < cfg.warmup_epochs:
        alpha = t / cfg.warmup_epochs
        return cfg.warmup_factor * (1 - alpha) + alpha
    if cfg.scheduler == "step":
        return cfg.gamma ** sum(t >= m for m in cfg.milestones)
    floor = cfg.min_lr / cfg.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t / max(1, cfg.epochs))))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per epoch."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, cfg))
