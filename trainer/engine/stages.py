"""One epoch of each CLIP-ReID training stage.

Stage 1 (prompt learning): the image encoder is frozen, so every training image's projected
feature is computed once (:func:`cache_image_features`) and epochs only run the text encoder
over the identity prompts: L = SupCon(image->text) + SupCon(text->image) + the method's stage-1
terms. A method whose modules sit inside the image encoder (MSCSA) sets
``stage1_needs_images`` and stage 1 then runs the (frozen) encoder on every batch instead.

Stage 2 (image encoder): the prompts are frozen, so all identities' text features are computed
once; the image encoder trains with
L = w_id * (CE_ls(global) + CE_ls(proj)) + w_tri * (Tri(prev) + Tri(global) + Tri(proj)) + w_i2t * CE_ls(i2t)
where ``prev`` is the penultimate ViT block's [CLS] (ResNet: pooled stage 3), as in the official
code, which sums the triplet loss over those three features (here batch-centered and normalised
by default, ``stage2.triplet_space``: raw ones collapse, see :mod:`trainer.losses`)
plus the method's stage-2 terms; a method may replace the i2t logits (TGI's fused text targets).
The same epoch function runs a method's frozen-backbone stage, with only its modules trainable.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Optional, cast

import torch
from torch import nn
from torch.utils.data import DataLoader

from core.progress import progress as progress_bar
from trainer.clip.image_encoders import ImageFeatures
from trainer.config import Stage1Config, Stage2Config
from trainer.data.sampler import PKBatchSampler
from trainer.engine.runtime import Runtime
from trainer.losses import batch_hard_triplet, id_loss, image_to_text_ce, supcon
from trainer.models.reid import CLIPReID


class Stage1Head(nn.Module):
    """One stage-1 forward (image features, text features, the method's terms) as a module of
    its own, so stage 1 can be wrapped in DDP."""

    def __init__(self, model: CLIPReID) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        labels: torch.Tensor,
        image_feats: Optional[torch.Tensor] = None,
        images: Optional[torch.Tensor] = None,
        camids: Optional[torch.Tensor] = None,
    ):
        if images is not None:
            image_feats = self.model.image_encoder(images, camids).proj_feat.float()
        if image_feats is None:
            raise ValueError("stage 1 needs images or their cached features")
        text = self.model.text_features(labels).float()
        return image_feats, text, self.model.method.stage1_losses(self.model, image_feats, labels)


STAGE_PROMPTS, STAGE_IMAGE, STAGE_METHOD = 1, 2, "method"


def freeze_for_stage(model: CLIPReID, stage: int | str) -> None:
    """Stage 1 trains the prompt tokens (and the method's stage-1 modules); stage 2 the image
    side; the method stage only the method's own modules, on a frozen backbone."""
    for p in model.parameters():
        p.requires_grad_(False)
    if stage == STAGE_PROMPTS:
        trainable = [model.prompt_learner.ctx, *model.method.stage1_parameters()]
    elif stage == STAGE_METHOD:
        trainable = model.method.stage2_parameters()
    else:
        trainable = model.image_parameters()
    for p in trainable:
        p.requires_grad_(True)
    model.bottleneck.bias.requires_grad_(False)
    model.bottleneck_proj.bias.requires_grad_(False)


@torch.no_grad()
def cache_image_features(
    model: CLIPReID, loader: DataLoader, device: torch.device, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected features [N, E] and labels [N] of every training image (eval transform)."""
    model.eval()
    feats, labels = [], []
    for images, pids, camids, _ in progress_bar(
        loader, "stage 1: caching image features", enabled=progress, leave=False
    ):
        feats.append(model.image_encoder(images.to(device), camids.to(device)).proj_feat.float().cpu())
        labels.append(pids)
    return torch.cat(feats), torch.cat(labels)


def _step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[torch.amp.GradScaler],
    params: list[nn.Parameter],
    grad_clip: Optional[float],
) -> None:
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
    return progress_bar(iterable, desc, total, enabled, leave=False)


def _cached_batches(
    features: torch.Tensor, labels: torch.Tensor, cfg: Stage1Config, rt: Runtime, epoch: int, seed: int
) -> list[dict]:
    gen = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(len(labels), generator=gen)
    batches = [b for b in order.split(cfg.batch_size) if len(b) > 1]
    batches = batches[: len(batches) - len(batches) % rt.world_size][rt.rank :: rt.world_size]
    return [{"labels": labels[idx], "image_feats": features[idx]} for idx in batches]


def _start_epoch(loader: DataLoader, epoch: int) -> None:
    """Reshuffle the loader's identity batches for ``epoch`` (same order on every rank)."""
    sampler = loader.batch_sampler
    if not isinstance(sampler, PKBatchSampler):
        raise TypeError(f"training batches come from a PKBatchSampler (pk_loader), not {type(sampler).__name__}")
    sampler.set_epoch(epoch)


def _image_batches(loader: DataLoader, epoch: int):
    _start_epoch(loader, epoch)
    for images, pids, camids, _ in loader:
        yield {"labels": pids, "images": images, "camids": camids}


def stage1_epoch(
    head: nn.Module,
    model: CLIPReID,
    data: tuple[torch.Tensor, torch.Tensor] | DataLoader,
    optimizer: torch.optim.Optimizer,
    cfg: Stage1Config,
    rt: Runtime,
    epoch: int,
    seed: int,
    progress: bool,
) -> dict[str, float]:
    """``data``: cached (features, labels), or a PK loader of images when the method needs them."""
    if isinstance(data, DataLoader):
        model.eval()  # frozen backbone: BatchNorm keeps its statistics while MSCSA trains
        batches, total = _image_batches(data, epoch), len(data)
    else:
        batches = _cached_batches(*data, cfg, rt, epoch, seed)
        total = len(batches)
    params = [p for p in model.parameters() if p.requires_grad]
    scale = model.logit_scale.exp().detach()
    totals: dict[str, float] = {}
    bar = _bar(batches, total, f"stage 1 epoch {epoch + 1}/{cfg.epochs}", progress)
    for batch in bar:
        batch = {k: v.to(rt.device) for k, v in batch.items()}
        img, text, extra = head(**batch)
        lab = batch["labels"]
        parts = {"i2t": supcon(img, text, lab, lab, scale), "t2i": supcon(text, img, lab, lab, scale), **extra}
        loss = sum(parts.values())
        _step(loss, optimizer, None, params, cfg.grad_clip)
        for k, v in {"loss": loss, **parts}.items():
            totals[k] = totals.get(k, 0.0) + v.item()
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    return {k: v / max(1, total) for k, v in totals.items()}


def _i2t_loss(
    out, text_features: torch.Tensor, pids: torch.Tensor, scale: torch.Tensor, label_smoothing: float
) -> torch.Tensor:
    """Image-to-text CE against all identities' text features, or the method's own logits (TGI)."""
    if "i2t_logits" in out.extras:
        return id_loss(out.extras["i2t_logits"].float(), pids, label_smoothing)
    return image_to_text_ce(out.proj_feat.float(), text_features, pids, scale, label_smoothing)


def stage2_triplet(feats: ImageFeatures, pids: torch.Tensor, margin: float, centered: bool = True) -> torch.Tensor:
    """Batch-hard triplet summed over the penultimate, final and projected features (official
    CLIP-ReID ``[img_feature_last, img_feature, img_feature_proj]``), each batch-centered and
    L2-normalised unless ``centered`` is False (the official raw features)."""
    chosen = [f for f in (feats.prev_feat, feats.global_feat, feats.proj_feat) if f is not None]
    # a sum of tensors (``chosen`` always holds global_feat): mypy's sum() type adds its int start
    return cast(torch.Tensor, sum(batch_hard_triplet(f.float(), pids, margin, centered) for f in chosen))


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
    desc: str = "stage 2",
) -> dict[str, float]:
    """``net`` is ``model`` or its DDP wrapper; the method adds its terms (``stage2_losses``)."""
    net.train()
    _start_epoch(loader, epoch)
    params = [p for p in model.parameters() if p.requires_grad]
    scale = model.logit_scale.exp().detach()
    use_amp = scaler is not None
    totals: dict[str, float] = {}
    bar = _bar(loader, len(loader), f"{desc} epoch {epoch + 1}", progress)
    for images, pids, camids, _ in bar:
        images, pids, camids = images.to(rt.device, non_blocking=True), pids.to(rt.device), camids.to(rt.device)
        amp = torch.autocast(rt.amp_device, dtype=torch.float16) if use_amp else nullcontext()
        with amp:
            out = net(images, camids, pids=pids)
            parts = {
                "id": cfg.id_weight
                * (
                    id_loss(out.logits, pids, cfg.label_smoothing) + id_loss(out.proj_logits, pids, cfg.label_smoothing)
                ),
                "triplet": cfg.triplet_weight
                * stage2_triplet(out.features, pids, cfg.margin, cfg.triplet_space == "centered"),
                "i2t": cfg.i2t_weight * _i2t_loss(out, text_features, pids, scale, cfg.label_smoothing),
                **model.method.stage2_losses(out, pids, cfg),
            }
            loss = cast(torch.Tensor, sum(parts.values()))  # of tensors (mypy's sum() type adds its int start)
        _step(loss, optimizer, scaler, params, cfg.grad_clip)
        for k, v in {"loss": loss, **parts}.items():
            totals[k] = totals.get(k, 0.0) + v.item()
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    return {k: v / max(1, len(loader)) for k, v in totals.items()}
