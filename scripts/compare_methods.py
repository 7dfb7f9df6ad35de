"""Train the baseline and each occlusion-robust method (tiny, CPU, synthetic occluded people),
then compare them under controlled query corruption.

    python scripts/compare_methods.py [--methods baseline agreid ...] [--out runs/compare_methods] [KEY=VALUE ...]
    python scripts/compare_methods.py --seeds 3 [--results docs/results] [--levels 0 0.2 0.4]

Each model trains from its recipe in ``configs/`` (``tiny_synthetic.yaml`` for the ViT baseline,
``configs/methods/tiny_*.yaml`` for the rest; MSCSA+TGI is a ResNet method and is compared with
the ResNet baseline). Overrides apply to every recipe (``stage2.epochs=3`` for a quick look).
All models see the same generated dataset and the same corrupted queries
(:mod:`trainer.robustness`). Writes ``summary.md``/``summary.json`` (clean metrics, parameters,
training time) and ``robustness.{json,md,png}`` in ``--out``, and prints both tables.

``--seeds N`` trains every method with training seeds 0..N-1 (same data, same corrupted
queries) and writes ``methods.json`` / ``methods.md`` / ``methods.png`` to ``--results``: per
method and condition (clean, each corruption level) the mean +- std over seeds of mAP and R1,
a 95 % bootstrap interval (seeds and queries resampled), and the paired difference to the
method's baseline (ViT methods: ``baseline``; MSCSA+TGI: ``baseline_rn``; paired by training
seed and query) with its interval; a difference counts as significant only when that interval
excludes 0. Per-query results go to ``methods_per_query.json``. Each finished (method, seed)
run is recorded in ``<out>/seed<s>/<method>/compare_run.json`` and reused when the same command
runs again: a run cut short resumes, and disjoint ``--methods`` groups may train side by side
into one ``--out`` before one call with every method writes the statistics
(:func:`trainer.eval.seed_stats.seed_statistics`). No hyper-parameter is tuned here: every
recipe is used as it is.
To tune one, pass ``data.val_ids=0.2`` (a validation split carved from the training identities,
:mod:`trainer.data.validation`) and read each run's ``eval_val.json``, never the test figures;
with it the stored matching threshold also comes from the validation split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from trainer.eval.seed_stats import seed_statistics

RECIPES = {
    "baseline": "configs/tiny_synthetic.yaml",
    "agreid": "configs/methods/tiny_agreid.yaml",
    "rganet": "configs/methods/tiny_rganet.yaml",
    "saga": "configs/methods/tiny_saga.yaml",
    "baseline_rn": "configs/methods/tiny_baseline_rn.yaml",
    "mscsa_tgi": "configs/methods/tiny_mscsa_tgi.yaml",
}


def train_one(name: str, recipe: str, out: Path, overrides: list[str]) -> dict:
    from trainer.config import load_train_config
    from trainer.engine.trainer import Trainer

    cfg = load_train_config(recipe, [*overrides, f"output_dir={out / name}"])
    t0 = time.time()
    trainer = Trainer(cfg, progress=False)
    result = trainer.fit()
    model = trainer.model
    inference_params = sum(p.numel() for p in model.image_encoder.parameters()) + sum(
        p.numel()
        for n, p in model.method.named_parameters()
        if not n.startswith(("attribute_encoder", "tgi", "prompts", "classifier", "necks", "neck"))
    )
    return {
        "method": name,
        "recipe": recipe,
        "checkpoint": str(result.checkpoint),
        "train_seconds": round(time.time() - t0, 1),
        "inference_params_M": round(inference_params / 1e6, 3),
        "embedding_dim": model.embedding_dim,
        **{k: round(100 * float(result.metrics[k]), 1) for k in ("mAP", "R1", "R5", "mINP")},
    }


BASELINE_OF = {"agreid": "baseline", "rganet": "baseline", "saga": "baseline", "mscsa_tgi": "baseline_rn"}


def per_query_results(
    checkpoint: str, recipe: str, overrides: list[str], levels: list[float], corruption_seed: int
) -> dict[str, dict]:
    """{condition: {"ap": [Q], "r1": [Q]}} for ``clean`` and ``<kind>@<level>``."""
    import torch
    from torch.utils.data import DataLoader

    from trainer.config import load_train_config
    from trainer.data.loader import eval_loader, prepare_dataset
    from trainer.data.transforms import test_transform
    from trainer.eval.evaluate import evaluate_features, extract_features
    from trainer.models import load_checkpoint
    from trainer.robustness import KINDS, CorruptedQueries

    cfg = load_train_config(recipe, overrides)
    data = prepare_dataset(cfg.data)
    model = load_checkpoint(checkpoint).model.eval()
    device = torch.device("cpu")
    transform = test_transform(cfg.model.image_size, cfg.data.mean, cfg.data.std)
    out = {}
    with torch.no_grad():
        gallery = extract_features(model, eval_loader(data.gallery, cfg), device, cfg.eval.flip, False)
        conditions = [("clean", None, 0.0)] + [(f"{k}@{lv:g}", k, lv) for k in KINDS for lv in levels if lv > 0]
        for name, kind, level in conditions:
            if kind is None:
                loader = eval_loader(data.query, cfg)
            else:
                loader = DataLoader(
                    CorruptedQueries(data.query, transform, kind, level, corruption_seed),
                    batch_size=cfg.eval.batch_size,
                    shuffle=False,
                )
            r = evaluate_features(extract_features(model, loader, device, cfg.eval.flip, False), gallery, cfg.eval)
            out[name] = {"ap": (100 * r.per_query_ap).tolist(), "r1": (100 * r.per_query_r1).tolist()}
    return out


def epoch_budget(recipe: str, overrides: list[str]) -> dict[str, int]:
    """Epochs a recipe trains for (stage 1, stage 2, the method's frozen-backbone stage), so the
    comparison states each method's budget next to its wall time."""
    from trainer.config import load_train_config

    cfg = load_train_config(recipe, overrides)
    return {
        "stage1": cfg.stage1.epochs,
        "stage2": cfg.stage2.epochs,
        "method_stage": cfg.model.method.frozen_backbone_epochs,
    }


def budget_markdown(results: dict) -> str:
    lines = [
        "| method | epochs (stage 1 / stage 2 / head on frozen backbone) "
        "| train time per seed, mean (s) | per seed (s) |",
        "|---|---|---|---|",
    ]
    for name, r in results.items():
        e = r["epochs"]
        per_seed = " / ".join(f"{run['train_seconds']:.0f}" for run in r["runs"])
        lines.append(
            f"| {name} | {e['stage1']} / {e['stage2']} / {e['method_stage']} "
            f"| {r['train_seconds_mean']:.0f} | {per_seed} |"
        )
    return "\n".join(lines) + "\n"


def seeds_markdown(results: dict, metric: str = "mAP") -> str:
    conds = list(next(iter(results.values()))["stats"])
    lines = ["| method | " + " | ".join(f"{c} {metric}" for c in conds) + " |", "|---|" + "---|" * len(conds)]
    for name, r in results.items():
        cells = []
        for c in conds:
            m = r["stats"][c][metric]
            cell = f"{m['mean']:.1f} ± {m['std']:.1f} [{m['ci95'][0]:.1f}, {m['ci95'][1]:.1f}]"
            d = m.get("diff_vs_baseline")
            if d:
                cell += f" Δ {d['mean']:+.1f}{' *' if d['significant'] else ''}"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def seeds_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainer.robustness import KINDS

    fig, axes = plt.subplots(1, len(KINDS), figsize=(5 * len(KINDS), 4), dpi=110, sharey=True)
    for ax, kind in zip(axes, KINDS):
        for name, r in results.items():
            conds = ["clean"] + [c for c in r["stats"] if c.startswith(kind + "@")]
            xs = [0.0] + [float(c.split("@")[1]) for c in conds[1:]]
            rows = [r["stats"][c]["mAP"] for c in conds]
            ax.errorbar(
                [100 * x for x in xs],
                [m["mean"] for m in rows],
                yerr=[m["std"] for m in rows],
                marker="o",
                capsize=3,
                label=name,
            )
        ax.set_title(f"{kind} (mean ± std over seeds)")
        ax.set_xlabel("query covered (%)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("mAP (%)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


RUN_RECORD = "compare_run.json"


def trained_run(name: str, seed: int, args) -> tuple[dict, dict]:
    """One (method, seed) run: its summary row and per-query results, kept in
    ``<out>/seed<seed>/<name>/compare_run.json`` so that a comparison cut short (a session ends,
    a machine is shared) resumes where it stopped, and so that disjoint ``--methods`` groups can
    train in parallel into one ``--out`` and a last call with every method only collects them.
    A record is reused only when recipe, overrides, levels and corruption seed are the same:
    anything else retrains."""
    overrides = [*args.overrides, f"seed={seed}"]
    key = {"recipe": RECIPES[name], "overrides": overrides, "levels": args.levels, "corruption_seed": args.seed}
    record = args.out / f"seed{seed}" / name / RUN_RECORD
    if record.exists():
        kept = json.loads(record.read_text())
        if kept.get("key") == key:
            print(f"== reusing {name} seed {seed} ({record})", flush=True)
            return kept["row"], kept["per_query"]
        print(f"== {record} was made with other settings: retraining", flush=True)
    print(f"== training {name} seed {seed} ({RECIPES[name]})", flush=True)
    row = train_one(name, RECIPES[name], args.out / f"seed{seed}", overrides)
    per_query = per_query_results(row["checkpoint"], RECIPES[name], overrides, args.levels, args.seed)
    record.write_text(json.dumps({"key": key, "row": row, "per_query": per_query}))
    return row, per_query


def run_seeds(args) -> None:
    results: dict = {}
    raw: dict = {}
    for name in args.methods:
        raw[name] = []
        runs = []
        for seed in range(args.seeds):
            row, per_query = trained_run(name, seed, args)
            runs.append(row)
            raw[name].append(per_query)
        results[name] = {
            "recipe": RECIPES[name],
            "runs": runs,
            "epochs": epoch_budget(RECIPES[name], args.overrides),
            "train_seconds_mean": round(sum(r["train_seconds"] for r in runs) / len(runs), 1),
        }
    for name in args.methods:
        ref = BASELINE_OF.get(name)
        results[name]["baseline"] = ref if ref in raw else None
        results[name]["stats"] = seed_statistics(raw[name], raw[ref] if ref in raw else None)
    args.results.mkdir(parents=True, exist_ok=True)
    meta = {
        "seeds": args.seeds,
        "levels": args.levels,
        "corruption_seed": args.seed,
        "overrides": args.overrides,
        "queries": len(next(iter(raw.values()))[0]["clean"]["ap"]),
        "bootstrap": 2000,
    }
    (args.results / "methods.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (args.results / "methods_per_query.json").write_text(json.dumps(raw))  # to recompute any statistic
    table = "\n".join([seeds_markdown(results, "mAP"), seeds_markdown(results, "R1"), budget_markdown(results)])
    (args.results / "methods.md").write_text(table)
    seeds_plot(results, args.results / "methods.png")
    print(table)


def summary_table(rows: list[dict]) -> str:
    lines = [
        "| method | recipe | mAP | R1 | R5 | mINP | image-side params (M) | embedding | train time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | `{r['recipe']}` | {r['mAP']} | {r['R1']} | {r['R5']} | {r['mINP']} "
            f"| {r['inference_params_M']} | {r['embedding_dim']} | {r['train_seconds']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--out", type=Path, default=Path("runs/compare_methods"))
    parser.add_argument("--seed", type=int, default=0, help="corruption seed")
    parser.add_argument(
        "--seeds", type=int, default=0, help="train each method with seeds 0..N-1 and write statistics to --results"
    )
    parser.add_argument("--results", type=Path, default=Path("docs/results"))
    parser.add_argument(
        "--levels", type=float, nargs="*", default=[0.0, 0.2, 0.4], help="corruption levels with --seeds"
    )
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE applied to every recipe")
    args = parser.parse_args()
    if args.seeds:
        from core.cli import setup_console_logging

        setup_console_logging()
        args.out.mkdir(parents=True, exist_ok=True)
        run_seeds(args)
        return

    from core.cli import setup_console_logging
    from trainer.robustness import main as robustness

    setup_console_logging()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.methods:
        print(f"== training {name} ({RECIPES[name]})", flush=True)
        rows.append(train_one(name, RECIPES[name], args.out, args.overrides))
    table = summary_table(rows)
    (args.out / "summary.md").write_text(table)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1))
    argv = ["--config", RECIPES["baseline"], "--out", str(args.out), "--seed", str(args.seed)]
    for r in rows:
        argv += ["--checkpoint", r["checkpoint"], "--label", r["method"]]
    print(table)
    robustness(argv + [o for o in args.overrides if o.startswith("data.") or o.startswith("eval.")])


if __name__ == "__main__":
    main()
