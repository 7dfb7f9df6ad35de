"""Export every method's full-size model (ViT-B/16, RN50 for MSCSA+TGI; random init, no weights
needed) to ONNX in FP32 and FP16 and print the ONNX Runtime vs PyTorch parity report.

    python scripts/check_method_exports.py [--methods baseline agreid ...] [--out /tmp/exports] [--images 8]

Shows that the inference path of each method exports and keeps parity at the real input size
(256x128); the unit tests do the same on tiny models. Uses the CPU unless ONNX Runtime has CUDA.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

METHODS = ("baseline", "agreid", "rganet", "saga", "mscsa_tgi")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", type=Path, default=Path("runs/method_exports"))
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()

    import torch

    from core.onnx_runner import ort_runner
    from export.onnx_export import build_graph, export_onnx
    from export.parity import FP16_MIN_COSINE, FP32_MIN_COSINE, check_backend, person_crops, torch_reference
    from trainer.config import ModelConfig
    from trainer.models import build_model, load_checkpoint, save_checkpoint

    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for method in args.methods:
        torch.manual_seed(0)
        backbone = "RN50" if method == "mscsa_tgi" else "ViT-B-16"
        cfg = ModelConfig(backbone={"name": backbone}, image_size=(256, 128), method={"name": method})
        checkpoint = save_checkpoint(
            args.out / f"{method}.pt", build_model(cfg, 10, 2, load_pretrained=False).eval(), cfg, 2
        )
        images = person_crops(args.images, 256, 128, seed=1)
        reference = torch_reference(build_graph(load_checkpoint(checkpoint)), images, None)
        for fp16 in (False, True):
            t0 = time.time()
            out, meta = export_onnx(checkpoint, args.out / f"{method}_{'fp16' if fp16 else 'fp32'}.onnx", fp16=fp16)
            report = check_backend(
                ort_runner(out),
                reference,
                meta,
                images,
                None,
                f"{method} ({backbone}) {meta.precision}",
                FP16_MIN_COSINE if fp16 else FP32_MIN_COSINE,
            )
            failed += not report.passed
            print(
                f"{report}  outputs {meta.outputs}  {out.stat().st_size / 1e6:.0f} MB  export {time.time() - t0:.0f} s",
                flush=True,
            )
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
