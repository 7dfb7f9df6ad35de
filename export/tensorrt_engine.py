"""ONNX -> TensorRT engine (FP16 with precision-sensitive layers pinned to FP32); the runner is core/tensorrt_runner.py.

Engines are specific to the GPU and TensorRT version that built them: build on the device that
runs them (on a Jetson, on the Jetson). ``tensorrt`` is imported lazily, so this module loads
everywhere and fails with a clear message only when an engine is actually built.

Why pin layers: ViT encoders lose FP16 parity through LayerNorm (mean/variance reductions) and
softmax overflow. Normalisation, softmax, reductions and the pow/sqrt/div of L2 norms are kept
in FP32 (``OBEY_PRECISION_CONSTRAINTS``); the matmuls, where the speed is, run in FP16.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from core.model_card import ModelMetadata
from core.tensorrt_runner import _trt

log = logging.getLogger(__name__)

FP32_LAYER_KEYWORDS = (
    "LayerNorm",
    "layer_norm",
    "ln_",
    "Softmax",
    "softmax",
    "ReduceMean",
    "Pow",
    "Sqrt",
    "ReduceL2",
    "Norm",
    "Div",
)


@dataclass
class BatchProfile:
    min: int = 1
    opt: int = 16
    max: int = 32

    @classmethod
    def parse(cls, text: str) -> BatchProfile:
        try:
            lo, opt, hi = (int(x) for x in text.split(":"))
        except ValueError as exc:
            raise ValueError(f"batch profile {text!r}: expected MIN:OPT:MAX, e.g. 1:16:32") from exc
        if not 1 <= lo <= opt <= hi:
            raise ValueError(f"batch profile {text!r}: need 1 <= MIN <= OPT <= MAX")
        return cls(lo, opt, hi)


def pin_fp32_layers(network, trt) -> int:
    """Force precision-sensitive layers to FP32; returns how many were pinned."""
    sensitive_types = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in sensitive_types or any(k in layer.name for k in FP32_LAYER_KEYWORDS):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def build_engine(
    onnx_path: str | Path,
    out: str | Path,
    meta: ModelMetadata,
    fp16: bool = True,
    batch: BatchProfile = BatchProfile(),
    workspace_gb: float = 2.0,
    timing_cache: Optional[str | Path] = None,
) -> Path:
    """Build and serialise a ReID engine; writes ``<out>.json`` (metadata) beside it."""
    out = Path(out)
    out.write_bytes(serialize_engine(onnx_path, fp16, batch, workspace_gb, timing_cache))
    meta.precision = "fp16" if fp16 else "fp32"
    meta.write_sidecar(out)
    return out


def serialize_engine(
    onnx_path: str | Path,
    fp16: bool = True,
    batch: BatchProfile = BatchProfile(),
    workspace_gb: float = 2.0,
    timing_cache: Optional[str | Path] = None,
    input_shape: Optional[tuple[int, ...]] = None,
) -> bytes:
    """The engine of an ONNX model with a dynamic batch: FP16 with the precision-sensitive layers
    pinned to FP32 (or FP32), one optimisation profile over ``batch``; updates ``timing_cache``.
    ``input_shape`` (the input's shape after the batch) fixes the other dimensions an export left
    dynamic (Ultralytics' ``dynamic=True`` also frees height and width)."""
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        log.info("pinned %d precision-sensitive layers to FP32", pin_fp32_layers(network, trt))
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(input_shape) if input_shape is not None else tuple(tensor.shape)[1:]
        if any(d < 0 for d in rest):
            raise ValueError(f"{onnx_path}: input {tensor.name} has dynamic dimensions {rest}: give the input shape")
        profile.set_shape(tensor.name, (batch.min, *rest), (batch.opt, *rest), (batch.max, *rest))
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    if cache_path:
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)
