"""Occlusion robustness: R1/mAP of a checkpoint as its queries are corrupted, level by level.

    python -m trainer.robustness --config <recipe>.yaml --checkpoint a.pt [--checkpoint b.pt ...]
           [--label baseline --label saga] [--levels 0 0.1 0.2 0.3 0.4 0.5] [--out DIR]

Two controlled corruptions of the query images, as in the SAGA-ReID paper's analysis (the
gallery stays clean):

* ``mask``: an erased area covering the given fraction of the image, either a horizontal band
  (full width) or a block of random aspect, filled with the mean CLIP colour;
* ``distractor``: another identity's image (a query of a different person) squeezed into a
  vertical strip covering the given fraction at the left or right edge, like a passer-by in front.

Which variant, where, and which distractor are drawn from ``--seed`` and the query's index, so
a run is reproducible and every checkpoint sees the very same corrupted queries. Writes
``robustness.json``, ``robustness.md`` and ``robustness.png`` (one curve per checkpoint).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.data.datasets import Sample
from trainer.data.loader import ImageDataset

LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
KINDS = ("mask", "distractor")
FILL = (123, 117, 104)  # CLIP mean colour, 0..255


def mask_image(img: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Erase ``fraction`` of ``img`` (HWC uint8): a horizontal band or a random block."""
    out = img.copy()
    H, W = img.shape[:2]
    if fraction <= 0:
        return out
    if rng.random() < 0.5:
        h = int(round(fraction * H))
        y = int(rng.integers(0, H - h + 1))
        out[y : y + h] = FILL
        return out
    area = fraction * H * W
    aspect = float(rng.uniform(0.5, 2.0))  # height / width
    h = int(round(min(H, np.sqrt(area * aspect))))
    w = int(round(min(W, area / max(h, 1))))
    h = int(round(min(H, area / max(w, 1))))
    y, x = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    out[y : y + h, x : x + w] = FILL
    return out


def paste_distractor(img: np.ndarray, other: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Cover the left or right ``fraction`` of ``img`` with ``other`` squeezed to that strip."""
    out = img.copy()
    H, W = img.shape[:2]
    w = int(round(fraction * W))
    if w <= 0:
        return out
    strip = np.asarray(Image.fromarray(other).resize((w, H), Image.Resampling.BILINEAR))
    if rng.random() < 0.5:
        out[:, :w] = strip
    else:
        out[:, W - w :] = strip
    return out


class CorruptedQueries(ImageDataset):
    """Query images corrupted by ``kind`` at ``fraction``, deterministic per (seed, index)."""

    def __init__(self, samples: Sequence[Sample], transform, kind: str, fraction: float, seed: int = 0):
        super().__init__(samples, transform)
        if kind not in KINDS:
            raise ValueError(f"unknown corruption {kind!r}; choose from {KINDS}")
        self.kind, self.fraction, self.seed = kind, fraction, seed

    def _load(self, index: int) -> np.ndarray:
        with Image.open(self.samples[index].path) as im:
            return np.asarray(im.convert("RGB"))

    def distractor_for(self, index: int, rng: np.random.Generator) -> int:
        pid = self.samples[index].pid
        others = [i for i, s in enumerate(self.samples) if s.pid != pid]
        if not others:
            raise ValueError("distractors need queries of at least two identities")
        return others[int(rng.integers(len(others)))]

    def __getitem__(self, index: int):
        s = self.samples[index]
        rng = np.random.default_rng((self.seed, index, int(round(self.fraction * 1000))))
        img = self._load(index)
        if self.kind == "mask":
            img = mask_image(img, self.fraction, rng)
        else:
            img = paste_distractor(img, self._load(self.distractor_for(index, rng)), self.fraction, rng)
        return self.transform(Image.fromarray(img)), s.pid, s.camid, index


def robustness_curves(
    model,
    cfg,
    data,
    device,
    levels: Sequence[float] = LEVELS,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, list[dict]]:
    """{kind: [{level, mAP, R1, R5, mINP}, ...]} with the gallery embedded once."""
    import torch
    from torch.utils.data import DataLoader

    from trainer.data.loader import eval_loader
    from trainer.data.transforms import test_transform
    from trainer.eval.evaluate import evaluate_features, extract_features

    transform = test_transform(cfg.model.image_size, cfg.data.mean, cfg.data.std)
    out: dict[str, list[dict]] = {}
    with torch.no_grad():
        gallery = extract_features(model, eval_loader(data.gallery, cfg), device, cfg.eval.flip, progress)
        for kind in kinds:
            out[kind] = []
            for level in levels:
                loader = DataLoader(
                    CorruptedQueries(data.query, transform, kind, level, seed),
                    batch_size=cfg.eval.batch_size,
                    shuffle=False,
                )
                r = evaluate_features(
                    extract_features(model, loader, device, cfg.eval.flip, progress), gallery, cfg.eval
                )
                out[kind].append(
                    {
                        "level": level,
                        "mAP": 100 * r.mAP,
                        "R1": 100 * r.rank(1),
                        "R5": 100 * r.rank(5),
                        "mINP": 100 * r.mINP,
                    }
                )
    return out


def markdown(results: dict[str, dict[str, list[dict]]]) -> str:
    levels = [row["level"] for row in next(iter(next(iter(results.values())).values()))]
    head = "| model | corruption | " + " | ".join(f"{int(100 * lv)}% R1 / mAP" for lv in levels) + " |"
    lines = [head, "|---|---|" + "---|" * len(levels)]
    for label, kinds in results.items():
        for kind, rows in kinds.items():
            lines.append(f"| {label} | {kind} | " + " | ".join(f"{r['R1']:.1f} / {r['mAP']:.1f}" for r in rows) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict[str, list[dict]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for label, curves in results.items():
            rows = curves[kind]
            x = [100 * r["level"] for r in rows]
            (line,) = ax.plot(x, [r["mAP"] for r in rows], "o-", label=f"{label} mAP")
            ax.plot(x, [r["R1"] for r in rows], "s--", color=line.get_color(), alpha=0.6, label=f"{label} R1")
        ax.set(xlabel="query area corrupted (%)", ylabel="%", title=f"{kind}", ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.robustness", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="recipe whose dataset and eval settings are used")
    parser.add_argument("--checkpoint", action="append", required=True, help="repeat to compare models")
    parser.add_argument("--label", action="append", default=None, help="one per checkpoint (default: file stem)")
    parser.add_argument("--levels", type=float, nargs="*", default=list(LEVELS))
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/robustness")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the recipe")
    args = parser.parse_args(argv)

    from core.cli import fail, setup_console_logging
    from core.configio import ConfigError
    from trainer.config import load_train_config
    from trainer.data.datasets import DatasetLayoutError
    from trainer.data.loader import prepare_dataset
    from trainer.devices import pick_device
    from trainer.models.checkpoint import CheckpointError, load_checkpoint

    setup_console_logging()
    labels = args.label or [Path(c).stem for c in args.checkpoint]
    if len(labels) != len(args.checkpoint):
        fail(f"{len(labels)} --label for {len(args.checkpoint)} --checkpoint")
    if any(not 0 <= lv < 1 for lv in args.levels):
        fail("--levels are fractions of the image in [0, 1)")
    missing = [c for c in args.checkpoint if not Path(c).is_file()]
    if missing:  # before the (long) evaluation of the others
        fail(f"checkpoint not found: {missing[0]}")
    results = {}
    try:
        cfg = load_train_config(args.config, args.overrides)
        device = pick_device(cfg.device)
        data = prepare_dataset(cfg.data)
        for label, ckpt in zip(labels, args.checkpoint):
            loaded = load_checkpoint(ckpt, device)
            cfg.model = loaded.model_config
            results[label] = robustness_curves(
                loaded.model, cfg, data, device, args.levels, args.kinds, args.seed, progress=True
            )
    except (ConfigError, DatasetLayoutError, CheckpointError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "config": args.config,
        "checkpoints": dict(zip(labels, args.checkpoint)),
        "seed": args.seed,
        "dataset": data.name,
    }
    (out / "robustness.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    table = markdown(results)
    (out / "robustness.md").write_text(table)
    plot(results, out / "robustness.png")
    print(table)
    return results


if __name__ == "__main__":
    main()
