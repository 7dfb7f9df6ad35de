"""The two-stage training run: data, model, stage 1, stage 2, checkpoints, resume, final report.

Run folder (``cfg.output_dir``)::

    config.yaml       the resolved recipe
    train.log         log messages
    log.csv/.jsonl    one row per epoch
    last.state.pt     resumable state (model, optimizer, scheduler, RNG of every rank, stage, epoch)
    model.pt          final checkpoint (trainer.models.checkpoint contract)
    eval.json / eval_cmc.png   final evaluation

``resume=True`` continues exactly where ``last.state.pt`` left off: same batches, same
augmentations, same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from core.embeddings import Embeddings
from trainer.config import TrainConfig
from trainer.data.datasets import ReIDData
from trainer.data.loader import ReadFailures, eval_loader, pk_loader, prepare_dataset
from trainer.engine.logbook import EpochLog
from trainer.engine.optim import build_optimizer, build_scheduler
from trainer.engine.runtime import (
    Runtime,
    gather_objects,
    parameter_checksum,
    rng_state,
    seed_everything,
    set_rng_state,
    setup_runtime,
    shutdown_runtime,
)
from trainer.engine.stages import (
    STAGE_IMAGE,
    STAGE_METHOD,
    STAGE_PROMPTS,
    Stage1Head,
    cache_image_features,
    freeze_for_stage,
    stage1_epoch,
    stage2_epoch,
)
from trainer.eval.evaluate import evaluate_features, extract_features, format_result, write_report
from trainer.eval.similarity_stats import gallery_swap_stats, similarity_stats
from trainer.models.checkpoint import save_checkpoint
from trainer.models.reid import CLIPReID, build_model

log = logging.getLogger(__name__)

STATE_FILE = "last.state.pt"
CHECKPOINT_FILE = "model.pt"


@dataclass
class TrainResult:
    checkpoint: Optional[Path]
    metrics: dict[str, Any] = field(default_factory=dict)
    initial_metrics: dict[str, Any] = field(default_factory=dict)
    val_metrics: dict[str, Any] = field(default_factory=dict)  # the validation split's (data.val_ids), if any
    rank_checksums: list[float] = field(default_factory=list)


def _setup_logging(out_dir: Path, rt: Runtime) -> None:
    if not rt.is_main:
        return
    handler = logging.FileHandler(out_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("trainer")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _wrap(module: torch.nn.Module, rt: Runtime) -> torch.nn.Module:
    if not rt.distributed:
        return module
    ids = [rt.device.index] if rt.device.type == "cuda" else None
    return DDP(module, device_ids=ids)


class Trainer:
    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        self.cfg = cfg
        self.rt = setup_runtime(cfg.device)
        self.progress = progress and self.rt.is_main
        self.out = Path(cfg.output_dir)
        if self.rt.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        _setup_logging(self.out, self.rt)
        self.logbook = EpochLog(self.out, enabled=self.rt.is_main)
        self.read_failures = ReadFailures()  # images that went bad after indexing: skipped, counted
        seed_everything(cfg.seed)
        self.data = self._prepare_data()
        self.model: CLIPReID = build_model(cfg.model, self.data.num_train_pids, self.data.num_cameras).to(
            self.rt.device
        )

    def _prepare_data(self) -> ReIDData:
        if self.rt.is_main:
            data = prepare_dataset(self.cfg.data)  # generates the synthetic set once
        if self.rt.distributed:
            torch.distributed.barrier()
        if not self.rt.is_main:
            data = prepare_dataset(self.cfg.data)
        if not data.train:
            raise ValueError(f"{data.name} has no training split; train on another dataset and evaluate on this one")
        if self.rt.is_main:
            log.info("\n%s", data.summary())
        return data

    # ---- state -------------------------------------------------------------------------
    def _save_state(self, stage: int | str, next_epoch: int, optimizer, scheduler, scaler) -> None:
        rngs = gather_objects(self.rt, rng_state())
        if not self.rt.is_main:
            return
        state = {
            "stage": stage,
            "epoch": next_epoch,
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rngs,
        }
        tmp = self.out / (STATE_FILE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.out / STATE_FILE)

    def _load_state(self, path: Path) -> dict:
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no training state at {path}")
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(state["model"])
        log.info("resuming from %s: stage %s, epoch %d", path, state["stage"], state["epoch"] + 1)
        return state

    # ---- stages ------------------------------------------------------------------------
    def _resume_into(self, resume: Optional[dict], optimizer, scheduler, scaler=None) -> int:
        """Restore optimizer/scheduler/scaler/RNG from ``resume``; -> the epoch to start at."""
        if resume is None:
            return 0
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if scaler is not None and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        set_rng_state(resume["rng"][self.rt.rank])
        return resume["epoch"]

    def _run_stage1(self, resume: Optional[dict]) -> None:
        cfg, rt = self.cfg, self.rt
        if cfg.stage1.epochs == 0:
            return
        freeze_for_stage(self.model, STAGE_PROMPTS)
        data: tuple[torch.Tensor, torch.Tensor] | DataLoader  # cached features, or images when the method needs them
        if self.model.method.stage1_needs_images:
            k = cfg.data.num_instances
            data = pk_loader(
                self.data.train, cfg, max(k, cfg.stage1.batch_size // k * k), rt.rank, rt.world_size, self.read_failures
            )
        else:
            data = cache_image_features(
                self.model, eval_loader(self.data.train, cfg, failures=self.read_failures), rt.device, self.progress
            )
        head = _wrap(Stage1Head(self.model), rt)
        optimizer = build_optimizer(self._trainable(), cfg.stage1)
        scheduler = build_scheduler(optimizer, cfg.stage1)
        start = self._resume_into(resume, optimizer, scheduler)
        for epoch in range(start, cfg.stage1.epochs):
            t0 = time.time()
            stats = stage1_epoch(head, self.model, data, optimizer, cfg.stage1, rt, epoch, cfg.seed, self.progress)
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            self._log_epoch(STAGE_PROMPTS, epoch, lr, stats, time.time() - t0)
            if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.stage1.epochs:
                self._save_state(STAGE_PROMPTS, epoch + 1, optimizer, scheduler, None)

    def _trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def _stage2_text_features(self) -> torch.Tensor:
        self.model.eval()
        text_features = self.model.all_text_features().float().detach()
        self.model.method.begin_stage2(self.model, text_features.to(self.rt.device))
        return text_features

    def _method_stage_config(self, epochs: int):
        """The frozen-backbone stage's schedule: the release's stage 3 (warm-up from 0.1, then a
        cosine to 1 % of ``method.stage_lr``), the stage-2 losses and optimiser otherwise."""
        m, s2 = self.cfg.model.method, self.cfg.stage2
        lr = m.stage_lr if m.stage_lr is not None else s2.lr * m.lr_factor
        return s2.model_copy(
            update={
                "epochs": epochs,
                "lr": lr,
                "scheduler": "cosine",
                "warmup_epochs": m.stage_warmup_epochs,
                "warmup_factor": 0.1,
                "min_lr": 0.01 * lr,
            }
        )

    def _run_image_stage(self, stage: int | str, resume: Optional[dict], text_features: torch.Tensor) -> None:
        """Stage 2, or the method's frozen-backbone stage after it (same epoch loop, only the
        method's modules trainable, its own schedule)."""
        cfg, rt = self.cfg, self.rt
        epochs = cfg.stage2.epochs if stage == STAGE_IMAGE else cfg.model.method.frozen_backbone_epochs
        if epochs == 0:
            return
        if stage == STAGE_METHOD and not self.model.method.stage2_parameters():
            log.warning(
                "method.frozen_backbone_epochs=%d ignored: method %s has no modules of its own to train",
                epochs,
                self.model.method.name,
            )
            return
        freeze_for_stage(self.model, stage)
        if stage == STAGE_IMAGE:
            stage_cfg = cfg.stage2.model_copy(update={"epochs": epochs})
            fresh = {id(p) for p in self.model.method.new_parameters()}
            factor = cfg.model.method.lr_factor
        else:
            self.model.method.begin_method_stage(self.model)
            stage_cfg, fresh, factor = self._method_stage_config(epochs), set(), 1.0
        loader = pk_loader(self.data.train, cfg, cfg.stage2.batch_size, rt.rank, rt.world_size, self.read_failures)
        net = _wrap(self.model, rt)
        optimizer = build_optimizer(self._trainable(), stage_cfg, lambda p: factor if id(p) in fresh else 1.0)
        scheduler = build_scheduler(optimizer, stage_cfg)
        scaler = torch.amp.GradScaler("cuda") if (cfg.amp and rt.device.type == "cuda") else None
        start = self._resume_into(resume, optimizer, scheduler, scaler)
        desc = "stage 2" if stage == STAGE_IMAGE else "method stage (frozen backbone)"
        for epoch in range(start, epochs):
            t0 = time.time()
            stats = stage2_epoch(
                net,
                self.model,
                loader,
                text_features.to(rt.device),
                optimizer,
                scaler,
                stage_cfg,
                rt,
                epoch,
                self.progress,
                desc,
            )
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            self._log_epoch(stage, epoch, lr, stats, time.time() - t0)
            if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == epochs:
                self._save_state(stage, epoch + 1, optimizer, scheduler, scaler)
            if (
                stage == STAGE_IMAGE
                and cfg.eval_every
                and (epoch + 1) % cfg.eval_every == 0
                and epoch + 1 < epochs
                and rt.is_main
            ):
                log.info(format_result(self.evaluate(), f"stage 2 epoch {epoch + 1}"))

    def _log_epoch(self, stage: int | str, epoch: int, lr: float, stats: dict[str, float], seconds: float) -> None:
        row = {"stage": stage, "epoch": epoch + 1, "lr": lr, **stats, "seconds": round(seconds, 3)}
        self.logbook.write(row)
        if self.rt.is_main:
            losses = " ".join(f"{k} {v:.4f}" for k, v in stats.items())
            log.info("stage %s epoch %d  lr %.2e  %s  (%.1fs)", stage, epoch + 1, lr, losses, seconds)

    def _skipped_images(self) -> dict:
        """For the run report: files left out when indexing, reads that failed during the run."""
        skipped = {
            "left_out_at_start": len(self.data.skipped),
            "files": self.data.skipped[:100],
            "failed_reads_during_run": self.read_failures.count,
        }
        if self.data.skipped or self.read_failures.count:
            log.warning(
                "images skipped: %d left out at start, %d failed reads during the run",
                len(self.data.skipped),
                self.read_failures.count,
            )
        return skipped

    # ---- public ------------------------------------------------------------------------
    def evaluate(self, with_similarity: bool = False, split: str = "test"):
        """Rank the query/gallery split (``split='val'``: the validation split carved from the
        training identities, ``data.val_ids``); with ``with_similarity`` also return the
        same/different-person similarity statistics (None when no identity is seen in two cameras)."""
        if split not in ("test", "val"):
            raise ValueError(f"split must be test or val, got {split!r}")
        query, gallery = (
            (self.data.query, self.data.gallery) if split == "test" else (self.data.val_query, self.data.val_gallery)
        )
        if not query:
            raise ValueError(f"no {split} split: set data.val_ids to carve one from the training identities")
        q = extract_features(
            self.model,
            eval_loader(query, self.cfg, failures=self.read_failures),
            self.rt.device,
            self.cfg.eval.flip,
            self.progress,
        )
        g = extract_features(
            self.model,
            eval_loader(gallery, self.cfg, failures=self.read_failures),
            self.rt.device,
            self.cfg.eval.flip,
            self.progress,
        )
        result = evaluate_features(q, g, self.cfg.eval)
        if not with_similarity:
            return result
        emb, pids, cams = Embeddings.concat([q[0], g[0]]), np.concatenate([q[1], g[1]]), np.concatenate([q[2], g[2]])
        try:
            stats = similarity_stats(emb, pids, cams, self.cfg.eval.false_match_rate)
            swap = (
                gallery_swap_stats(g[0], g[1], g[2], [s.path for s in gallery]) if len(g[1]) == len(gallery) else None
            )
            if swap is not None:
                stats["swap"] = swap
        except ValueError as exc:
            log.warning("no similarity statistics: %s", exc)
            stats = None
        return result, stats

    def fit(self, resume: bool | str | Path = False) -> TrainResult:
        cfg, rt = self.cfg, self.rt
        state = None
        if resume:
            state = self._load_state(self.out / STATE_FILE if resume is True else Path(resume))
        result = TrainResult(checkpoint=None)
        if cfg.eval_initial and rt.is_main and state is None:
            initial = self.evaluate()
            log.info(format_result(initial, "untrained"))
            write_report(initial, self.out, "eval_untrained")
            result.initial_metrics = initial.as_dict()
        stage = state["stage"] if state is not None else STAGE_PROMPTS
        if stage == STAGE_PROMPTS:
            self._run_stage1(state)
            state = None
        text_features = self._stage2_text_features()
        if stage in (STAGE_PROMPTS, STAGE_IMAGE):
            self._run_image_stage(STAGE_IMAGE, state, text_features)
            state = None
        self._run_image_stage(STAGE_METHOD, state, text_features)
        result.rank_checksums = gather_objects(rt, parameter_checksum(self.model))
        if rt.is_main:
            final, stats = self.evaluate(with_similarity=True)
            log.info(format_result(final, "trained"))
            val = None
            if self.data.val_query:  # the matching threshold is a tuned number: choose it on validation, not test
                val, stats = self.evaluate(with_similarity=True, split="val")
                log.info(format_result(val, "validation"))
                write_report(val, self.out, "eval_val")
                result.val_metrics = val.as_dict()
            meta = {
                "dataset": self.data.name,
                "stage1_epochs": cfg.stage1.epochs,
                "stage2_epochs": cfg.stage2.epochs,
                "world_size": rt.world_size,
                "rank_checksums": result.rank_checksums,
                "skipped_images": self._skipped_images(),
                "method_stage_epochs": cfg.model.method.frozen_backbone_epochs,
                "mean": list(cfg.data.mean),
                "std": list(cfg.data.std),
            }  # export must normalise as training did (RN50: ImageNet)
            if self.data.val_query:  # which identities were held out: training labels depend on it
                meta["val_split"] = {"val_ids": cfg.data.val_ids, "val_seed": cfg.data.val_seed}
            if stats is not None:
                meta["similarity"] = {**stats, "split": "val" if val is not None else "test"}
                log.info(
                    "matching threshold %.4f at false-match rate %.2f (same %.3f, different %.3f)",
                    stats["threshold"],
                    stats["false_match_rate"],
                    stats["same_mean"],
                    stats["diff_mean"],
                )
            write_report(final, self.out, "eval", meta)
            result.metrics = final.as_dict()
            meta["metrics"] = {k: result.metrics[k] for k in ("mAP", "R1", "R5", "R10", "mINP")}
            result.checkpoint = save_checkpoint(
                self.out / CHECKPOINT_FILE, self.model, cfg.model, self.data.num_cameras, text_features, meta
            )
            log.info("checkpoint: %s", result.checkpoint)
        shutdown_runtime(rt)
        return result
