"""python -m trainer.train --config configs/<recipe>.yaml [KEY=VALUE ...] [--resume]

Multi-GPU / multi-node: ``torchrun --nproc_per_node N -m trainer.train --config ...``.
"""

from __future__ import annotations

import argparse
import os

from core.cli import fail, setup_console_logging
from core.configio import ConfigError
from core.extras import TRAINING, MissingExtra, require
from trainer.config import load_train_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.train", description="Two-stage CLIP-ReID training")
    parser.add_argument("--config", required=True, help="recipe YAML (see configs/)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        help="continue from <output_dir>/last.state.pt (or the given state file)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. stage2.epochs=10 data.root=/data")
    args = parser.parse_args(argv)
    setup_console_logging()
    try:
        require("training", TRAINING)
    except MissingExtra as exc:
        fail(str(exc))
    from trainer.clip.factory import PretrainedWeightsError
    from trainer.data.datasets import DatasetLayoutError

    try:
        cfg = load_train_config(args.config, args.overrides)
        from trainer.engine.trainer import Trainer

        result = Trainer(cfg, progress=not args.no_progress).fit(resume=args.resume)
    except (ConfigError, DatasetLayoutError, PretrainedWeightsError, FileNotFoundError) as exc:
        fail(str(exc))
    if result.checkpoint is not None and int(os.environ.get("RANK", "0")) == 0:
        m = result.metrics
        print(f"checkpoint: {result.checkpoint}")
        if result.initial_metrics:
            print(
                f"untrained: mAP {100 * result.initial_metrics['mAP']:.1f}  R1 {100 * result.initial_metrics['R1']:.1f}"
            )
        print(
            f"trained:   mAP {100 * m['mAP']:.1f}  R1 {100 * m['R1']:.1f}  R5 {100 * m['R5']:.1f}  R10 "
            f"{100 * m['R10']:.1f}  mINP {100 * m['mINP']:.1f}"
        )
        print(f"report:    {cfg.output_dir}/eval.json, {cfg.output_dir}/eval_cmc.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
