"""Train the demo person detector on the synthetic world, on the CPU, from nothing.

    python scripts/train_demo_detector.py [--epochs 40] [--out edge/demo_models]

Training frames come from many versions of the ``train`` scene (``--seeds``, default 1-36: other
people, other walks, other camera looks, camera rigs at scale 1, 0.75 and 0.5 so people come in
many sizes). Many seeds matter more than many frames: each seed brings three new camera looks
(colour gain, brightness, blur, sensor noise), and a detector that saw few of them misses people
in a dark, noisy camera it never met;
the held-out validation frames come from the ``demo`` scene the edge demo runs on (seed 0). The architecture is
YOLOv8 at a smaller scale (configs/yolo/demo-detector.yaml). Writes ``detector.pt``, its ONNX
export ``detector.onnx`` (what the edge runs: ``python -m export detector --format onnx``) and
``detector.json`` (how it was made, what it scores) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from sim.scene import World, resolve_scene, three_camera_rig
from sim.writers import write_yolo_dataset

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--work", default="runs/demo_detector", help="scratch folder for data and Ultralytics runs")
    parser.add_argument("--out", default=str(ROOT / "edge" / "demo_models"))
    parser.add_argument(
        "--seeds",
        type=int,
        nargs=2,
        default=(1, 36),
        metavar=("FIRST", "LAST"),
        help="train scene seeds (inclusive range)",
    )
    parser.add_argument("--every", type=int, default=15, help="every Nth frame of each seed's 60 s")
    parser.add_argument("--init", default=None, help="start from these weights (continue training) instead of the yaml")
    args = parser.parse_args()

    from ultralytics import YOLO

    work = Path(args.work).resolve()
    data_dir = work / "data"
    if not (data_dir / "images" / "val").is_dir():
        for i, seed in enumerate(range(args.seeds[0], args.seeds[1] + 1)):
            rig = three_camera_rig((1.0, 0.75, 0.5)[i % 3])
            write_yolo_dataset(
                World(resolve_scene("train", seed=seed, duration_s=60.0, cameras=rig)),
                data_dir,
                "train",
                every=args.every,
            )
        write_yolo_dataset(World(resolve_scene("demo")), data_dir, "val", every=20)
    data_yaml = work / "data.yaml"
    data_yaml.write_text(f"path: {data_dir}\ntrain: images/train\nval: images/val\nnames:\n  0: person\n")

    model = YOLO(args.init or str(ROOT / "configs" / "yolo" / "demo-detector.yaml"))
    previous = (
        json.loads((Path(args.out) / "detector.json").read_text())
        if args.init and (Path(args.out) / "detector.json").is_file()
        else None
    )
    start = time.time()
    model.train(
        data=str(data_yaml),
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device="cpu",
        workers=0,
        plots=False,
        project=str(work),
        name="train",
        exist_ok=True,
        amp=False,
        mosaic=1.0,
        close_mosaic=5,
        patience=100,
        verbose=False,
        **({"lr0": 0.002, "warmup_epochs": 0, "pretrained": True} if args.init else {}),
    )
    minutes = (time.time() - start) / 60
    best = work / "train" / "weights" / "best.pt"
    metrics = YOLO(str(best)).val(data=str(data_yaml), imgsz=args.imgsz, device="cpu", plots=False, verbose=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(best, out / "detector.pt")
    # what the edge runs (no PyTorch there): the ONNX export, dynamic batch, metadata inside
    from export.detector import export_detector

    export_detector(out / "detector.pt", "onnx", False, args.imgsz, batch=4)  # writes out/detector.onnx
    card = {
        "model": "YOLOv8 scale p (configs/yolo/demo-detector.yaml), 1 class: person",
        "trained_on": f"synthetic world scene 'train', seeds {args.seeds[0]}-{args.seeds[1]} "
        "(60 s each, rigs at scale 1/0.75/0.5), "
        f"every {args.every}th frame of 3 cameras",
        "validated_on": "synthetic world scene 'demo' (seed 0, people unseen in training), every 20th frame",
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "train_minutes_cpu": round(minutes, 1),
        "val_mAP50": round(float(metrics.box.map50), 4),
        "val_mAP50_95": round(float(metrics.box.map), 4),
        "val_precision": round(float(metrics.box.mp), 4),
        "val_recall": round(float(metrics.box.mr), 4),
        "command": "python scripts/train_demo_detector.py "
        f"--epochs {args.epochs} --seeds {args.seeds[0]} {args.seeds[1]} "
        f"--every {args.every}" + (f" --init {args.init}" if args.init else ""),
    }
    if previous:
        card["continued_from"] = {
            k: previous[k]
            for k in ("trained_on", "epochs", "train_minutes_cpu", "val_mAP50", "command", "continued_from")
            if k in previous
        }
    (out / "detector.json").write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps(card, indent=1))


if __name__ == "__main__":
    main()
