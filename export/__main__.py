"""python -m export {onnx,check,trt,detector} ...

onnx      checkpoint -> ONNX (dynamic batch, uint8 NHWC input, metadata), parity-checked
check     print the parity report of an ONNX model (and optionally an engine) vs PyTorch
trt       ONNX -> TensorRT engine (+ sidecar JSON), parity-checked against ONNX Runtime
detector  Ultralytics YOLO weights -> TensorRT engine / ONNX via Ultralytics' exporter
detector-engine  an exported detector ONNX -> TensorRT engine + its card, on the device, no PyTorch
similarity  measure same/different-person similarity on a ReID set; store it and the matching threshold in the ONNX
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli import fail, setup_console_logging
from core.extras import DETECTOR_EXPORT, ENGINE_BUILD, EXPORT, MissingExtra, require


def _parity_images(meta, args):
    from export.parity import person_crops

    images = person_crops(args.num_images, meta.input_height, meta.input_width, seed=0, folder=args.images)
    cameras = (images[:, 0, 0, 0].astype("int64") % max(1, meta.num_cameras)) if meta.camera_input else None
    return images, cameras


def _onnx_report(checkpoint: Path, onnx_path: Path, args):
    from core.model_card import read_onnx_metadata
    from core.onnx_runner import ort_runner
    from export.onnx_export import build_graph
    from export.parity import FP16_MIN_COSINE, FP32_MIN_COSINE, check_backend, torch_reference
    from trainer.models.checkpoint import load_checkpoint

    meta = read_onnx_metadata(onnx_path)
    if meta is None:
        fail(f"{onnx_path} has no clipreid-edge metadata: was it written by `python -m export onnx`?")
    images, cameras = _parity_images(meta, args)
    reference = torch_reference(build_graph(load_checkpoint(checkpoint)), images, cameras)
    threshold = FP16_MIN_COSINE if meta.precision == "fp16" else FP32_MIN_COSINE
    report = check_backend(
        ort_runner(onnx_path, ["CPUExecutionProvider"]),
        reference,
        meta,
        images,
        cameras,
        f"onnxruntime {meta.precision}",
        threshold,
    )
    return meta, report


def _engine_report(engine: Path, onnx_path: Path, meta, args, threshold: float, label: str):
    """TensorRT engine vs ONNX Runtime on the same crops, in batches the engine's profile allows."""
    from core.onnx_runner import ort_runner
    from core.tensorrt_runner import EngineRunner
    from export.parity import check_backend, feed

    images, cameras = _parity_images(meta, args)
    reference = ort_runner(onnx_path, ["CPUExecutionProvider"])(feed(meta, images, cameras))
    runner = EngineRunner(engine)
    return check_backend(
        runner, reference, meta, images, cameras, label, threshold, batch=min(runner.batch_range[1], 8)
    )


def cmd_onnx(args) -> int:
    from export.onnx_export import export_onnx

    out, meta = export_onnx(args.checkpoint, args.out, args.opset, args.fp16)
    _, report = _onnx_report(Path(args.checkpoint), out, args)
    print(
        f"wrote {out}  ({meta.precision}, input uint8 NHWC {meta.input_height}x{meta.input_width}, "
        f"embedding {meta.embedding_dim}, camera input: {meta.camera_input or 'none'})"
    )
    print(report)
    return 0 if report.passed else 1


def cmd_check(args) -> int:
    meta, report = _onnx_report(Path(args.checkpoint), Path(args.onnx), args)
    print(report)
    reports = [report]
    if args.engine:
        from export.parity import FP16_MIN_COSINE

        reports.append(_engine_report(Path(args.engine), Path(args.onnx), meta, args, FP16_MIN_COSINE, "tensorrt"))
        print(reports[-1])
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in reports], indent=2))
    return 0 if all(r.passed for r in reports) else 1


def cmd_trt(args) -> int:
    from core.model_card import read_onnx_metadata
    from export.parity import FP16_MIN_COSINE, FP32_MIN_COSINE
    from export.tensorrt_engine import BatchProfile, build_engine

    meta = read_onnx_metadata(args.onnx)
    if meta is None:
        fail(f"{args.onnx} has no clipreid-edge metadata: export it with `python -m export onnx`")
    profile = BatchProfile.parse(args.batch)
    engine = build_engine(args.onnx, args.out, meta, args.fp16, profile, args.workspace_gb, args.timing_cache)
    threshold = FP16_MIN_COSINE if args.fp16 else FP32_MIN_COSINE
    report = _engine_report(
        engine, Path(args.onnx), meta, args, threshold, f"tensorrt {'fp16' if args.fp16 else 'fp32'}"
    )
    print(f"wrote {engine} (+ {engine}.json)")
    print(report)
    if not report.passed:
        Path(engine).unlink()
        print("parity failed: engine removed", file=sys.stderr)
        return 1
    return 0


def cmd_detector_engine(args) -> int:
    from export.detector_engine import build_detector_engine
    from export.tensorrt_engine import BatchProfile

    engine, report = build_detector_engine(
        args.onnx,
        args.out,
        args.fp16,
        BatchProfile.parse(args.batch),
        args.workspace_gb,
        Path(args.images) if args.images else None,
        args.conf,
    )
    print(f"parity against ONNX Runtime: {report}")
    if not report.passed:
        print("parity failed: engine removed", file=sys.stderr)
        return 1
    print(f"wrote {engine} (+ {engine}.detector.json)")
    return 0


def cmd_detector(args) -> int:
    from export.detector import export_detector

    print(export_detector(args.weights, args.format, args.fp16, args.imgsz, args.batch, args.device))
    return 0


def cmd_similarity(args) -> int:
    from export.similarity import store_similarity

    print(json.dumps(store_similarity(args.onnx, args.dataset, args.root, args.false_match_rate), indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--images", type=Path, help="folder of person crops for the parity check (default: synthetic people)"
    )
    common.add_argument("--num-images", type=int, default=32)

    p = sub.add_parser("onnx", parents=[common], help="checkpoint -> ONNX")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument(
        "--fp16",
        action="store_true",
        help="FP16 weights/activations (LayerNorm, softmax, reductions kept in FP32); parity threshold 0.999",
    )
    p.set_defaults(func=cmd_onnx)

    p = sub.add_parser("check", parents=[common], help="parity report")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--onnx", required=True)
    p.add_argument("--engine", help="also check a TensorRT engine against ONNX Runtime")
    p.add_argument("--json", help="write the reports here")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("trt", parents=[common], help="ONNX -> TensorRT engine")
    p.add_argument("--onnx", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--batch", default="1:16:32", help="MIN:OPT:MAX batch of the optimisation profile")
    p.add_argument("--workspace-gb", type=float, default=2.0)
    p.add_argument("--timing-cache", help="timing cache file (read if present, updated after the build)")
    p.set_defaults(func=cmd_trt)

    p = sub.add_parser("detector", help="YOLO weights -> engine/ONNX via Ultralytics")
    p.add_argument("--weights", required=True)
    p.add_argument("--format", default="engine", choices=["engine", "onnx", "openvino"])
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device")
    p.set_defaults(func=cmd_detector)

    p = sub.add_parser("detector-engine", help="exported detector ONNX -> TensorRT engine + card, no PyTorch")
    p.add_argument("--onnx", required=True, help="python -m export detector --format onnx wrote it")
    p.add_argument("--out", required=True)
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--batch", default="1:4:8", help="MIN:OPT:MAX batch (a fixed-batch ONNX keeps its own)")
    p.add_argument("--workspace-gb", type=float, default=2.0)
    p.add_argument("--images", help="folder of .jpg/.png frames for the parity check (default: demo frames)")
    p.add_argument("--conf", type=float, default=0.25, help="candidates compared: ONNX Runtime score >= conf")
    p.set_defaults(func=cmd_detector_engine)

    p = sub.add_parser(
        "similarity", help="store same/different-person similarity and the matching threshold in an ONNX"
    )
    p.add_argument("--onnx", required=True)
    p.add_argument("--dataset", default="market1501", help="dataset layout (as data.dataset in training recipes)")
    p.add_argument("--root", required=True, help="dataset folder")
    p.add_argument("--false-match-rate", type=float, default=0.01)
    p.set_defaults(func=cmd_similarity)

    args = parser.parse_args(argv)
    setup_console_logging()
    needs = {"trt": ENGINE_BUILD, "detector-engine": ENGINE_BUILD, "detector": DETECTOR_EXPORT}.get(
        args.command, EXPORT
    )
    try:
        require(f"export {args.command}", needs)
    except MissingExtra as exc:
        fail(str(exc))
    onnx_in = getattr(args, "onnx", None)
    if onnx_in is not None and not Path(onnx_in).is_file():
        fail(f"--onnx {onnx_in}: file not found")
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:  # ExportError, CheckpointError: RuntimeErrors
        fail(str(exc))


if __name__ == "__main__":
    raise SystemExit(main())
