"""Running an exported ONNX model with ONNX Runtime (also the parity reference for TensorRT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def ort_session(onnx_path: str | Path, providers: list[str] | None = None, threads: int = 0, spin: bool = True):
    """An ONNX Runtime session for this model, fully optimised unless the model is FP16.

    ``threads`` sets the intra-op pool (0: ONNX Runtime's default, one per core); ``spin=False``
    stops its idle workers from spin-waiting between calls, which burns a CPU quota that the other
    stages of a pipeline need (the edge runtime decides both from the CPUs it may use).

    FP16 exports run with graph optimisations off: ONNX Runtime 1.32's optimiser crashes the
    process (segfault, in its NCHWc layout pass) on the converted FP16 graph on the CPU provider;
    unoptimised, it runs and keeps parity. The precision is in the model's own metadata, so the
    model is first opened unoptimised on the CPU (cheap: no graph rewriting, nothing on the GPU)
    to read it through ONNX Runtime's metadata map; that probe is freed before the real session
    opens. No ``onnx`` package.
    """
    import onnxruntime as ort

    from core.model_card import metadata_from_props

    available = ort.get_available_providers()
    wanted = [p for p in (providers or ("CUDAExecutionProvider", "CPUExecutionProvider")) if p in available] or [
        "CPUExecutionProvider"
    ]
    probe_options = ort.SessionOptions()
    probe_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    probe = ort.InferenceSession(str(onnx_path), probe_options, providers=["CPUExecutionProvider"])  # never on the GPU
    meta = metadata_from_props(probe.get_modelmeta().custom_metadata_map)
    del probe  # freed before the real session: one copy of the weights at a time
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    fp16 = meta is not None and meta.precision == "fp16"
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL if fp16 else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
    return ort.InferenceSession(str(onnx_path), options, providers=wanted)


def ort_runner(onnx_path: str | Path, providers: list[str] | None = None):
    """A callable ``inputs dict -> [every output]`` over one ONNX Runtime session."""
    session = ort_session(onnx_path, providers)

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(None, inputs)

    return run
