"""Running an exported ONNX model with ONNX Runtime (also the parity reference for TensorRT)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def session_options(onnx_path: str | Path, threads: int = 0):
    """ONNX Runtime session options for this model.

    FP16 exports run with graph optimisations off: ONNX Runtime 1.32's optimiser crashes the
    process (segfault) on the converted FP16 graph on the CPU provider; unoptimised, it runs and
    keeps parity.
    """
    import onnxruntime as ort

    from export.metadata import read_onnx_metadata

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    meta = read_onnx_metadata(onnx_path)
    if meta is not None and meta.precision == "fp16":
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def ort_session(onnx_path: str | Path, providers: list[str] | None = None):
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(str(onnx_path), session_options(onnx_path), providers=wanted)


def ort_runner(onnx_path: str | Path, providers: list[str] | None = None):
    """A callable ``inputs dict -> [every output]`` over one ONNX Runtime session."""
    session = ort_session(onnx_path, providers)

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(None, inputs)

    return run
