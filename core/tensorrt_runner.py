"""Runs a serialised TensorRT engine: numpy in, numpy out (the edge's and the exporter's runner).

``tensorrt`` is imported lazily, so this module loads everywhere and fails with a clear message
only when an engine is actually run. Device buffers come from pycuda (the Jetson path, no
PyTorch) or, where it is installed, from PyTorch CUDA tensors. Building engines is the
exporter's job (``export/tensorrt_engine.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import SupportsInt

import numpy as np

from core.model_card import ModelMetadata, sidecar_path


class TensorRTUnavailable(RuntimeError):
    pass


def _trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(
            "TensorRT is not installed: pip install 'clipreid-edge[trt]' on a machine with an NVIDIA GPU"
        ) from exc
    return trt


class EngineRunner:
    """Runs a serialised engine on one CUDA stream: numpy in, numpy out (every output, in order).

    Device buffers come from pycuda when it is installed (``buffers="pycuda"``; the usual choice
    on a Jetson, where a full PyTorch is heavy), else from PyTorch CUDA tensors
    (``buffers="torch"``); ``"auto"`` picks in that order. Host->device and device->host copies
    are asynchronous on the runner's stream. A batch outside the engine's optimisation profile
    is an error, not a crash.
    """

    def __init__(self, engine_path: str | Path, buffers: str = "auto") -> None:
        trt = _trt()
        self.trt = trt
        self.path = Path(engine_path)
        self.io = _PyCudaIO() if _pick_buffers(buffers) == "pycuda" else _TorchIO()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{self.path}: not an engine for this GPU / TensorRT version; rebuild it on this device")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        lo, _, hi = self.engine.get_tensor_profile_shape(self.inputs[0], 0)
        self.batch_range = (lo[0], hi[0])
        meta_file = sidecar_path(self.path)
        self.metadata = ModelMetadata.from_json(meta_file.read_text()) if meta_file.is_file() else None

    def __call__(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        batch = len(next(iter(inputs.values())))
        if not self.batch_range[0] <= batch <= self.batch_range[1]:
            raise ValueError(
                f"batch {batch} is outside the engine's profile "
                f"{self.batch_range[0]}..{self.batch_range[1]} ({self.path})"
            )
        for name in self.inputs:
            host = np.ascontiguousarray(inputs[name], dtype=self.trt.nptype(self.engine.get_tensor_dtype(name)))
            self.context.set_input_shape(name, host.shape)
            self.context.set_tensor_address(name, self.io.upload(name, host))
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            self.context.set_tensor_address(
                name, self.io.allocate(name, shape, self.trt.nptype(self.engine.get_tensor_dtype(name)))
            )
        self.context.execute_async_v3(self.io.stream_handle)
        return [out.astype(np.float32, copy=False) for out in self.io.download(self.outputs)]


def _pick_buffers(buffers: str) -> str:
    if buffers not in ("auto", "pycuda", "torch"):
        raise ValueError(f"buffers must be auto, pycuda or torch, got {buffers!r}")
    if buffers != "auto":
        return buffers
    import importlib.util

    return "pycuda" if importlib.util.find_spec("pycuda") is not None else "torch"


class _TorchIO:
    """Device buffers as PyTorch CUDA tensors on a PyTorch stream."""

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("TensorRT engines need a CUDA GPU")
        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.stream_handle = self.stream.cuda_stream
        self.tensors: dict[str, torch.Tensor] = {}

    def upload(self, name: str, host: np.ndarray) -> int:
        with self.torch.cuda.stream(self.stream):
            self.tensors[name] = self.torch.from_numpy(host).pin_memory().to("cuda", non_blocking=True)
        return self.tensors[name].data_ptr()

    def allocate(self, name: str, shape: tuple, dtype) -> int:
        self.tensors[name] = self.torch.empty(
            shape, dtype=self.torch.from_numpy(np.zeros(0, dtype)).dtype, device="cuda"
        )
        return self.tensors[name].data_ptr()

    def download(self, names: list[str]) -> list[np.ndarray]:
        with self.torch.cuda.stream(self.stream):
            hosts = [self.tensors[n].to("cpu", non_blocking=True) for n in names]
        self.stream.synchronize()
        return [h.numpy() for h in hosts]


class _PyCudaIO:
    """Device buffers from pycuda (pinned host arrays, async copies on a pycuda stream).

    Uses the device's primary context, the one the CUDA runtime (and so TensorRT) uses.
    Buffers are kept per tensor and reallocated only when a batch needs more room.
    """

    def __init__(self) -> None:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() == 0:
            raise RuntimeError("TensorRT engines need a CUDA GPU")
        self.cuda = cuda
        self.context = cuda.Device(0).retain_primary_context()
        self.context.push()
        self.stream = cuda.Stream()
        self.stream_handle = self.stream.handle
        self.device: dict[str, tuple[SupportsInt, int]] = {}  # name -> (allocation, bytes)
        self.hosts: dict[str, np.ndarray] = {}

    def _buffer(self, name: str, nbytes: int) -> int:
        alloc, size = self.device.get(name, (None, 0))
        if alloc is None or size < nbytes:
            alloc = self.cuda.mem_alloc(max(nbytes, 1))
            self.device[name] = (alloc, nbytes)
        return int(alloc)

    def upload(self, name: str, host: np.ndarray) -> int:
        pinned = self.cuda.pagelocked_empty(host.shape, host.dtype)
        pinned[...] = host
        self.hosts[name] = pinned  # keep alive until the copy is done
        ptr = self._buffer(name, pinned.nbytes)
        self.cuda.memcpy_htod_async(ptr, pinned, self.stream)
        return ptr

    def allocate(self, name: str, shape: tuple, dtype) -> int:
        self.hosts[name] = self.cuda.pagelocked_empty(shape, dtype)
        return self._buffer(name, self.hosts[name].nbytes)

    def download(self, names: list[str]) -> list[np.ndarray]:
        for n in names:
            self.cuda.memcpy_dtoh_async(self.hosts[n], self._buffer(n, self.hosts[n].nbytes), self.stream)
        self.stream.synchronize()
        return [self.hosts[n].copy() for n in names]
