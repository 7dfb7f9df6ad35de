"""python -m trainer.eval --config <recipe>.yaml --checkpoint <model.pt> [--out DIR] [KEY=VALUE ...]

Evaluates a checkpoint on the recipe's dataset (query vs gallery) with the recipe's ``eval``
settings, prints CMC/mAP/mINP and writes ``<name>.json`` + ``<name>_cmc.png``. The default name
says how it was evaluated, so a training run's own ``eval.json`` is not overwritten by another
setting: ``eval`` (as in training), ``eval_flip``, ``eval_rerank`` or ``eval_flip_rerank``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import fail, setup_console_logging
from core.configio import ConfigError
from trainer.config import load_train_config
from trainer.data.datasets import DatasetLayoutError
from trainer.models.checkpoint import CheckpointError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.eval", description="Evaluate a ReID checkpoint")
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", help="report folder (default: beside the checkpoint)")
    parser.add_argument(
        "--name", default=None, help="report file stem (default: eval[_flip][_rerank], from the eval settings)"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE, e.g. eval.rerank=true eval.flip=true")
    args = parser.parse_args(argv)
    setup_console_logging()
    try:
        import torch

        from trainer.data.loader import eval_loader, prepare_dataset
        from trainer.devices import pick_device
        from trainer.eval.evaluate import evaluate_model, format_result, write_report
        from trainer.models.checkpoint import load_checkpoint

        cfg = load_train_config(args.config, args.overrides)
        device = pick_device(cfg.device)
        loaded = load_checkpoint(args.checkpoint, device)
        cfg.model = loaded.model_config  # the checkpoint's architecture wins over the recipe's
        data = prepare_dataset(cfg.data)
        with torch.no_grad():
            result = evaluate_model(
                loaded.model,
                eval_loader(data.query, cfg),
                eval_loader(data.gallery, cfg),
                cfg.eval,
                device,
                not args.no_progress,
            )
    except (ConfigError, DatasetLayoutError, CheckpointError, FileNotFoundError) as exc:
        fail(str(exc))
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    paths = write_report(
        result,
        out,
        args.name or report_name(cfg.eval.flip, cfg.eval.rerank),
        {"dataset": data.name, "checkpoint": str(args.checkpoint), "eval": cfg.eval.model_dump()},
    )
    print(format_result(result, data.name))
    print(f"report: {paths['json']}, {paths['png']}")
    return 0


def report_name(flip: bool, rerank: bool) -> str:
    return "eval" + ("_flip" if flip else "") + ("_rerank" if rerank else "")


if __name__ == "__main__":
    raise SystemExit(main())
