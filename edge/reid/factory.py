"""The configured ReID backend (``reid.backend`` in the cameras YAML), loaded and checked.

Each backend module is imported only when chosen, so an edge box without torch or TensorRT never
loads them.
"""

from __future__ import annotations

from pathlib import Path

from edge.reid.base import ReIDBackend, ReIDBackendError
from edge.reid.config import ReIDConfig


def build_backend(cfg: ReIDConfig) -> ReIDBackend:
    """The configured backend, refused at load when the model does not keep its metadata's contract."""
    if not Path(cfg.model).exists():
        raise ReIDBackendError(f"ReID model not found: {cfg.model}")
    if cfg.backend == "onnxruntime":
        from edge.reid.onnxruntime_backend import OnnxRuntimeBackend

        backend: ReIDBackend = OnnxRuntimeBackend(
            cfg.model, cfg.device, cfg.batch_size, cfg.normalization, cfg.input_size
        )
    elif cfg.backend == "torch":
        from edge.reid.torch_backend import TorchBackend

        backend = TorchBackend(cfg.model, cfg.device, cfg.batch_size)
    else:
        from edge.reid.tensorrt_backend import TensorRTBackend

        backend = TensorRTBackend(cfg.model, cfg.batch_size)
    backend.check_contract(cfg.model)
    return backend
