"""Do trained AG-ReID models' pseudo-labels agree with the synthetic people's true attributes?

    python scripts/agreid_attributes.py --data DATA_ROOT CHECKPOINT [CHECKPOINT ...]
           [--out docs/results/agreid_attributes.json]

``DATA_ROOT``: the generated synthetic dataset the checkpoints trained on (it holds
``synthetic.json``, the true appearances). For every checkpoint and every pseudo-label group
(each attribute slot's tokens, and all of them) it prints and stores the Mantel r between
pseudo-label similarity and true-attribute similarity and its permutation p-value
(:mod:`trainer.eval.attribute_agreement`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_pseudo_labels(checkpoint: Path, data_root: Path):
    """-> (tokens [C, T, W], slots, appearances in label order)."""
    from trainer.data.datasets import parse_market1501
    from trainer.models.checkpoint import load_checkpoint

    meta = json.loads((data_root / "synthetic.json").read_text())
    loaded = load_checkpoint(checkpoint)
    if loaded.method != "agreid":
        raise SystemExit(f"{checkpoint}: method {loaded.method}, not agreid")
    data = parse_market1501(data_root)
    split = loaded.train_meta.get("val_split")
    if split:  # trained with a validation split: the same identities were held out
        from trainer.data.validation import carve_validation

        data = carve_validation(data, split["val_ids"], split["val_seed"])
    mapping = data.train_pid_map  # synthetic pid p is appearances[p - 1]
    by_label = sorted(mapping, key=mapping.get)
    appearances = [meta["appearances"][pid - 1] for pid in by_label]
    learner = loaded.model.prompt_learner
    return learner.ctx.detach().float().numpy(), dict(learner.slot_positions), appearances


def main(argv: list[str] | None = None) -> int:
    from trainer.eval.attribute_agreement import ATTRIBUTES, pseudo_label_agreement

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="synthetic dataset root (holds synthetic.json)")
    ap.add_argument("--out", type=Path, default=None, help="JSON file to write")
    ap.add_argument("--permutations", type=int, default=999)
    args = ap.parse_args(argv)
    results = {}
    for ck in args.checkpoints:
        tokens, slots, apps = load_pseudo_labels(ck, args.data)
        res = pseudo_label_agreement(tokens, slots, apps, args.permutations)
        results[str(ck)] = res
        print(f"\n{ck}: Mantel r (p) of pseudo-label similarity vs true-attribute similarity, {len(apps)} identities")
        print(f"{'':8s} " + " ".join(f"{a:>13s}" for a in ATTRIBUTES))
        for group, row in res.items():
            print(f"{group:8s} " + " ".join(f"{row[a]['r']:6.3f} ({row[a]['p']:.3f})" for a in ATTRIBUTES))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"data": str(args.data), "permutations": args.permutations, "results": results}, indent=1)
        )
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
