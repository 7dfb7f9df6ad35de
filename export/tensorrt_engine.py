"""ONNX -> TensorRT engine (FP16 with precision-sensitive layers pinned to FP32), and a runner.

Engines are specific to the GPU and TensorRT version that built them: build on the device that
runs them (on a Jetson, on the Jetson). ``tensorrt`` is imported lazily, so this module loads
everywhere and fails with a clear message only when an engine is actually built or run.

Why pin layers: ViT encoders lose FP16 parity through LayerNorm (mean/variance reductions) and
softmax overflow. Normalisation, softmax, reductions and the pow/sqrt/div of L2 norms are kept
in FP32 (``OBEY_PRECISION_CONSTRAINTS``); the matmuls, where the speed is, run in FP16.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from export.metadata import ModelMetadata, sidecar_path

log = logging.getLogger(__name__)

FP32_LAYER_KEYWORDS = ("LayerNorm", "layer_norm", "ln_", "Softmax", "softmax", "ReduceMean", "Pow", "Sqrt", "ReduceL2", "Norm", "Div")


class TensorRTUnavailable(RuntimeError):
    pass


def _trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable("TensorRT is not installed: pip install 'clipreid-edge[trt]' on a machine with an NVIDIA GPU") from exc
    return trt


@dataclass
class BatchProfile:
    min: int = 1
    opt: int = 16
    max: int = 32

    @classmethod
    def parse(cls, text: str) -> "BatchProfile":
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


def build_engine(onnx_path: str | Path, out: str | Path, meta: ModelMetadata, fp16: bool = True, batch: BatchProfile = BatchProfile(), workspace_gb: float = 2.0, timing_cache: Optional[str | Path] = None) -> Path:
    """Build and serialise an engine; writes ``<out>.json`` (metadata) beside it."""
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
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (batch.min, *rest), (batch.opt, *rest), (batch.max, *rest))
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    out = Path(out)
    out.write_bytes(bytes(serialized))
    if cache_path:
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    meta.precision = "fp16" if fp16 else "fp32"
    meta.write_sidecar(out)
    return out


class EngineRunner:
    """Runs a serialised engine with PyTorch CUDA tensors as buffers, on one CUDA stream.

    Inputs are numpy arrays (copied host->device asynchronously); every output comes back as a
    numpy array, in the engine's output order. A batch outside the engine's optimisation profile is an error, not a crash.
    """

    def __init__(self, engine_path: str | Path) -> None:
        import torch

        trt = _trt()
        if not torch.cuda.is_available():
            raise RuntimeError("TensorRT engines need a CUDA GPU")
        self.torch, self.trt = torch, trt
        self.path = Path(engine_path)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{self.path}: not an engine for this GPU / TensorRT version; rebuild it on this device")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        lo, _, hi = self.engine.get_tensor_profile_shape(self.inputs[0], 0)
        self.batch_range = (lo[0], hi[0])
        meta_file = sidecar_path(self.path)
        self.metadata = ModelMetadata.from_json(meta_file.read_text()) if meta_file.is_file() else None

    def _dtype(self, name: str):
        return {self.trt.float32: self.torch.float32, self.trt.float16: self.torch.float16, self.trt.int64: self.torch.int64,
                self.trt.int32: self.torch.int32, self.trt.uint8: self.torch.uint8}[self.engine.get_tensor_dtype(name)]

    def __call__(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        batch = len(next(iter(inputs.values())))
        if not self.batch_range[0] <= batch <= self.batch_range[1]:
            raise ValueError(f"batch {batch} is outside the engine's profile {self.batch_range[0]}..{self.batch_range[1]} ({self.path})")
        with torch.cuda.stream(self.stream):
            buffers = {}
            for name in self.inputs:
                host = torch.from_numpy(np.ascontiguousarray(inputs[name])).pin_memory()
                buffers[name] = host.to("cuda", dtype=self._dtype(name), non_blocking=True)
                self.context.set_input_shape(name, tuple(buffers[name].shape))
            for name in self.outputs:
                buffers[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._dtype(name), device="cuda")
            for name, tensor in buffers.items():
                self.context.set_tensor_address(name, tensor.data_ptr())
            self.context.execute_async_v3(self.stream.cuda_stream)
            results = [buffers[name].float().cpu() for name in self.outputs]
        self.stream.synchronize()
        return [r.numpy() for r in results]
