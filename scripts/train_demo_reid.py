"""Train the demo ReID model on the synthetic world and export it for the edge, on the CPU.

    python scripts/train_demo_reid.py [--out edge/demo_models]

1. ``python -m sim reid --scene train --seed 1 2 3`` writes the world's people as a
   Market-1501-layout dataset (scene ``train``, seeds 1-3: three casts of people and three sets of
   camera looks, none of them a demo seed), the last 40 % of each seed's identities held out,
   every query occluded;
2. ``python -m trainer.train --config configs/demo_world_reid.yaml`` trains a tiny CLIP-ReID;
3. ``python -m export onnx`` exports the image encoder (uint8 crops in, L2 embedding out),
   ``python -m export check`` checks ONNX Runtime against PyTorch, and ``python -m export
   similarity`` measures the same/different-person statistics (raw and camera-centered), the
   matching thresholds and the mean look on the exported graph, into its metadata.
Writes ``reid.onnx`` and ``reid.json`` (how it was made, what it scores) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.model_card import read_onnx_metadata  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "edge" / "demo_models"))
    parser.add_argument("--skip-train", action="store_true", help="reuse runs/demo_world_reid/model.pt")
    args = parser.parse_args()
    run_dir = ROOT / "runs" / "demo_world_reid"
    if not args.skip_train:
        if not (ROOT / "data" / "world_reid_multi" / "query").is_dir():
            run(
                "-m",
                "sim",
                "reid",
                "--scene",
                "train",
                "--seed",
                "1",
                "2",
                "3",
                "--out",
                "data/world_reid_multi",
                "--every",
                "4",
            )
        run("-m", "trainer.train", "--config", "configs/demo_world_reid.yaml")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run("-m", "export", "onnx", "--checkpoint", str(run_dir / "model.pt"), "--out", str(out / "reid.onnx"))
    run("-m", "export", "check", "--checkpoint", str(run_dir / "model.pt"), "--onnx", str(out / "reid.onnx"))
    similarity = [
        "-m",
        "export",
        "similarity",
        "--onnx",
        str(out / "reid.onnx"),
        "--dataset",
        "market1501",
        "--root",
        "data/world_reid_multi",
    ]
    run(*similarity)  # measured on the exported graph the edge runs (raw and camera-centered), into its metadata
    metrics = json.loads((run_dir / "eval.json").read_text())
    untrained = json.loads((run_dir / "eval_untrained.json").read_text())
    card = {
        "model": "tiny CLIP-ReID (tiny-vit, 128x64 input, random init), exported image encoder",
        "trained_on": "synthetic world scene 'train', seeds 1-3 (3 casts, 3 camera looks), "
        "108 identities x 3 cameras (configs/demo_world_reid.yaml)",
        "evaluated_on": "72 held-out identities of those seeds; every query occluded (visibility < 0.85), "
        "Occluded-Duke style",
        "similarity": {
            **read_onnx_metadata(out / "reid.onnx").similarity,
            "mean": "320 values in the ONNX metadata: the prior of each camera's mean look",
        },
        "similarity_command": f"python -m export similarity --onnx {os.path.relpath(out / 'reid.onnx', ROOT)} "
        "--dataset market1501 --root data/world_reid_multi",
        "metrics_percent": {
            k: round(100 * float(metrics[k]), 1) for k in ("mAP", "R1", "R5", "R10", "mINP") if k in metrics
        },
        "untrained_metrics_percent": {k: round(100 * float(untrained[k]), 1) for k in ("mAP", "R1") if k in untrained},
        "command": "python scripts/train_demo_reid.py",
    }
    (out / "reid.json").write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps(card, indent=1))


if __name__ == "__main__":
    main()
