"""Running an exported ONNX model with ONNX Runtime (also the parity reference for TensorRT)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def ort_session(onnx_path: str | Path, providers: list[str] | None = None):
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(str(onnx_path), providers=wanted)


def ort_runner(onnx_path: str | Path, providers: list[str] | None = None):
    """A callable ``inputs dict -> [every output]`` over one ONNX Runtime session."""
    session = ort_session(onnx_path, providers)

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(None, inputs)

    return run
