"""One epoch of each CLIP-ReID training stage.

Stage 1 (prompt learning): the image encoder is frozen, so every training image's projected
feature is computed once (:func:`cache_image_features`) and epochs only run the text encoder
over the identity prompts: L = SupCon(image->text) + SupCon(text->image).

Stage 2 (image encoder): the prompts are frozen, so all identities' text features are computed
once; the image encoder trains with
L = w_id * (CE_ls(global) + CE_ls(proj)) + w_tri * (Tri(global) + Tri(proj)) + w_i2t * CE_ls(i2t).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from trainer.config import Stage1Config, Stage2Config
from trainer.engine.runtime import Runtime
from trainer.losses import batch_hard_triplet, id_loss, image_to_text_ce, supcon
from trainer.models.reid import CLIPReID


class TextHead(nn.Module):
    """Identity labels -> text features; a module of its own so stage 1 can be wrapped in DDP."""

    def __init__(self, model: CLIPReID) -> None:
        super().__init__()
        self.model = model

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.model.text_features(labels)


def freeze_for_stage(model: CLIPReID, stage: int) -> None:
    """Stage 1 trains only the prompt tokens; stage 2 only the image side."""
    for p in model.parameters():
        p.requires_grad_(False)
    if stage == 1:
        model.prompt_learner.ctx.requires_grad_(True)
    else:
        for p in model.image_parameters():
            p.requires_grad_(True)
        model.bottleneck.bias.requires_grad_(False)
        model.bottleneck_proj.bias.requires_grad_(False)


@torch.no_grad()
def cache_image_features(model: CLIPReID, loader: DataLoader, device: torch.device, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected features [N, E] and labels [N] of every training image (eval transform)."""
    model.eval()
    feats, labels = [], []
    for images, pids, camids, _ in tqdm(loader, desc="stage 1: caching image features", disable=not progress, leave=False):
        feats.append(model.image_encoder(images.to(device), camids.to(device)).proj_feat.float().cpu())
        labels.append(pids)
    return torch.cat(feats), torch.cat(labels)


def _step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler], params: list[nn.Parameter], grad_clip: Optional[float]) -> None:
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def _bar(iterable, total: int, desc: str, enabled: bool):
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def stage1_epoch(
    head: nn.Module,
    model: CLIPReID,
    features: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    cfg: Stage1Config,
    rt: Runtime,
    epoch: int,
    seed: int,
    progress: bool,
) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(len(labels), generator=gen)
    batches = [b for b in order.split(cfg.batch_size) if len(b) > 1]
    batches = batches[: len(batches) - len(batches) % rt.world_size][rt.rank :: rt.world_size]
    params = [model.prompt_learner.ctx]
    scale = model.logit_scale.exp().detach()
    totals = {"loss": 0.0, "i2t": 0.0, "t2i": 0.0}
    bar = _bar(batches, len(batches), f"stage 1 epoch {epoch + 1}/{cfg.epochs}", progress)
    for idx in bar:
        img = features[idx].to(rt.device)
        lab = labels[idx].to(rt.device)
        text = head(lab).float()
        i2t = supcon(img, text, lab, lab, scale)
        t2i = supcon(text, img, lab, lab, scale)
        loss = i2t + t2i
        _step(loss, optimizer, None, params, cfg.grad_clip)
        for k, v in (("loss", loss), ("i2t", i2t), ("t2i", t2i)):
            totals[k] += v.item()
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    return {k: v / max(1, len(batches)) for k, v in totals.items()}


def stage2_epoch(
    net: nn.Module,
    model: CLIPReID,
    loader: DataLoader,
    text_features: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[torch.amp.GradScaler],
    cfg: Stage2Config,
    rt: Runtime,
    epoch: int,
    progress: bool,
    extra_losses: Optional[Callable[..., dict[str, torch.Tensor]]] = None,
) -> dict[str, float]:
    """``net`` is ``model`` or its DDP wrapper; ``extra_losses(out, pids)`` lets methods add terms."""
    net.train()
    loader.batch_sampler.set_epoch(epoch)
    params = [p for p in model.parameters() if p.requires_grad]
    scale = model.logit_scale.exp().detach()
    use_amp = scaler is not None
    totals: dict[str, float] = {}
    bar = _bar(loader, len(loader), f"stage 2 epoch {epoch + 1}/{cfg.epochs}", progress)
    for images, pids, camids, _ in bar:
        images, pids, camids = images.to(rt.device, non_blocking=True), pids.to(rt.device), camids.to(rt.device)
        amp = torch.autocast(rt.amp_device, dtype=torch.float16) if use_amp else nullcontext()
        with amp:
            out = net(images, camids)
            parts = {
                "id": cfg.id_weight * (id_loss(out.logits, pids, cfg.label_smoothing) + id_loss(out.proj_logits, pids, cfg.label_smoothing)),
                "triplet": cfg.triplet_weight * (batch_hard_triplet(out.global_feat.float(), pids, cfg.margin) + batch_hard_triplet(out.proj_feat.float(), pids, cfg.margin)),
                "i2t": cfg.i2t_weight * image_to_text_ce(out.proj_feat.float(), text_features, pids, scale, cfg.label_smoothing),
            }
            if extra_losses is not None:
                parts.update(extra_losses(out, pids))
            loss = sum(parts.values())
        _step(loss, optimizer, scaler, params, cfg.grad_clip)
        for k, v in {"loss": loss, **parts}.items():
            totals[k] = totals.get(k, 0.0) + v.item()
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    return {k: v / max(1, len(loader)) for k, v in totals.items()}
