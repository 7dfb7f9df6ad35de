"""Person-detector export through Ultralytics' own exporter, so both engines come from one tool."""

from __future__ import annotations

from pathlib import Path


def export_detector(
    weights: str | Path,
    fmt: str = "engine",
    fp16: bool = True,
    imgsz: int = 640,
    batch: int = 1,
    device: str | None = None,
) -> Path:
    """``fmt``: engine (TensorRT, needs a GPU), onnx or openvino. Returns the exported path."""
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"detector weights not found: {weights}")
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise RuntimeError("detector export needs Ultralytics: pip install ultralytics") from exc

    if fmt == "engine":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(
                "a TensorRT detector engine must be built on a machine with a CUDA GPU (use --format onnx here)"
            )
    model = YOLO(str(weights))
    kwargs = {"format": fmt, "imgsz": imgsz, "batch": batch, "dynamic": batch > 1}
    if fp16 and fmt in ("engine", "onnx"):
        kwargs["half"] = fmt == "engine"  # ONNX FP16 export needs a GPU in Ultralytics; keep ONNX FP32 on CPU
    if device is not None:
        kwargs["device"] = device
    return Path(model.export(**kwargs))
