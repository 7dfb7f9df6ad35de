"""Benchmark ReID embedding: throughput, latency percentiles, peak memory, parity vs PyTorch FP32.

    python scripts/bench_reid.py --checkpoint runs/demo_world_reid/model.pt --out runs/bench/reid
    python scripts/bench_reid.py --arch ViT-B-16 --image-size 256 128 --out runs/bench/reid_vitb16   # random init

Backends: ``torch-fp32`` (CPU or GPU), ``torch-fp16`` (GPU only), ``onnxruntime`` (the exported
graph; CUDA provider when available) and ``tensorrt-fp16`` (when TensorRT and a GPU are there).
Each runs batches of 1, 8, 16 and 32 crops: warm-up iterations first, then ``--iters`` timed
calls; p50/p95/p99 are per call, images/s is batch / median. Parity is the worst per-image cosine
to PyTorch FP32 on the same crops. Writes bench.json (device, versions, settings), bench.md and
bench.png into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):  # peak resident set size
                return int(line.split()[1]) / 1024.0
    return float("nan")


def make_checkpoint(arch: str, image_size: tuple[int, int], folder: Path) -> Path:
    import torch

    from trainer.config import ModelConfig
    from trainer.models import build_model, save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(backbone={"name": arch}, image_size=image_size)
    return save_checkpoint(
        folder / "bench.pt", build_model(cfg, num_classes=8, num_cameras=1).eval(), cfg, num_cameras=1
    )


def time_calls(fn, batch: np.ndarray, warmup: int, iters: int, sync=lambda: None) -> np.ndarray:
    for _ in range(warmup):
        fn(batch)
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn(batch)
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    return np.array(times)


def backends(checkpoint: Path, onnx_path: Path, engine_dir: Path):
    """(name, run(crops) -> embeddings, sync, peak-memory reader) for what this machine has."""
    import torch

    from edge.reid.onnxruntime_backend import OnnxRuntimeBackend
    from edge.reid.torch_backend import TorchBackend

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    fp32 = TorchBackend(str(checkpoint), device, max_batch=64)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    mem = (lambda: torch.cuda.max_memory_allocated() / 2**20) if cuda else rss_mb
    yield f"torch-fp32-{device}", lambda x: fp32.embed(x).global_, sync, mem
    if cuda:
        half = TorchBackend(str(checkpoint), "cuda", max_batch=64)
        half.graph.half()

        def run_half(x):
            with torch.inference_mode():
                out = half.graph(torch.from_numpy(x).cuda())
            return out.float().cpu().numpy()

        yield "torch-fp16-cuda", run_half, sync, mem
    ort = OnnxRuntimeBackend(str(onnx_path), device, max_batch=64)
    yield f"onnxruntime-{device}", lambda x: ort.embed(x).global_, sync, mem
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return
    if cuda:
        from core.model_card import read_onnx_metadata
        from edge.reid.tensorrt_backend import TensorRTBackend
        from export.tensorrt_engine import BatchProfile, build_engine

        engine = build_engine(
            onnx_path,
            engine_dir / "bench.engine",
            read_onnx_metadata(onnx_path),
            fp16=True,
            batch=BatchProfile(1, 16, 32),
        )
        trt = TensorRTBackend(str(engine), max_batch=32)
        yield "tensorrt-fp16", lambda x: trt.embed(x).global_, sync, mem


def environment() -> dict:
    import onnxruntime
    import torch

    return {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint", default=None, help="a training checkpoint (default: a random-init --arch model)"
    )
    parser.add_argument("--arch", default="tiny-vit")
    parser.add_argument("--image-size", type=int, nargs=2, default=(128, 64))
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8, 16, 32])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", default="runs/bench/reid")
    args = parser.parse_args()
    from core.cli import one_line_errors
    from trainer.models.checkpoint import CheckpointError

    with one_line_errors(CheckpointError, FileNotFoundError, ValueError):
        rows, meta = measure(args)
    write_results(rows, meta, args)


def measure(args: argparse.Namespace) -> tuple[list[dict], object]:
    """Every backend this machine has, at every batch size: one row each."""
    from export.onnx_export import export_onnx
    from export.parity import person_crops

    work = Path(tempfile.mkdtemp(prefix="bench_reid_"))
    checkpoint = Path(args.checkpoint) if args.checkpoint else make_checkpoint(args.arch, tuple(args.image_size), work)
    onnx_path, meta = export_onnx(checkpoint, work / "bench.onnx")
    crops = person_crops(max(args.batches), meta.input_height, meta.input_width, seed=0)
    rows, reference = [], None
    for name, run, sync, mem in backends(checkpoint, onnx_path, work):
        out = run(crops)
        if reference is None:
            reference = out  # the first backend is PyTorch FP32
        cos = float((out / np.linalg.norm(out, axis=1, keepdims=True) * reference).sum(1).min())
        for b in args.batches:
            t = time_calls(run, crops[:b], args.warmup, args.iters, sync)
            p50, p95, p99 = np.percentile(t, [50, 95, 99])
            rows.append(
                {
                    "backend": name,
                    "batch": b,
                    "images_per_s": round(float(b / (p50 / 1000)), 1),
                    "p50_ms": round(float(p50), 2),
                    "p95_ms": round(float(p95), 2),
                    "p99_ms": round(float(p99), 2),
                    "peak_memory_mb": round(float(mem()), 1),
                    "min_cosine_vs_fp32": round(cos, 6),
                }
            )
            print(" ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    return rows, meta


def write_results(rows: list[dict], meta, args: argparse.Namespace) -> None:
    """bench.json, bench.md and bench.png into ``args.out``; says where."""
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(
        json.dumps(
            {"settings": vars(args), "environment": environment(), "model": meta.__dict__, "results": rows},
            indent=1,
            default=str,
        )
    )
    lines = [
        "| backend | batch | images/s | p50 ms | p95 ms | p99 ms | peak MB | min cos vs FP32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['backend']} | {r['batch']} | {r['images_per_s']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
        f"{r['peak_memory_mb']} | {r['min_cosine_vs_fp32']} |"
        for r in rows
    ]
    (out_dir / "bench.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in dict.fromkeys(r["backend"] for r in rows):
        sel = [r for r in rows if r["backend"] == name]
        ax.plot([r["batch"] for r in sel], [r["images_per_s"] for r in sel], "o-", label=name)
    ax.set(
        xlabel="batch",
        ylabel="images / s",
        title=f"ReID embedding ({meta.input_height}x{meta.input_width})",
        xscale="log",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "bench.png", dpi=100)
    print("\n".join(lines))
    print(f"wrote {out_dir / 'bench.json'}, {out_dir / 'bench.md'}, {out_dir / 'bench.png'}")


if __name__ == "__main__":
    main()
