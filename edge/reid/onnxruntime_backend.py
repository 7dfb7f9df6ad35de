"""The ONNX Runtime backend: our exports (metadata in the model) and third-party ReID models.

Third-party ONNX models without our metadata (OSNet from BoxMOT, torchreid exports...) get the
input size from the model's input shape (or ``reid.input_size``) and the normalisation from
``reid.normalization`` (:func:`third_party_metadata`); their first output is the embedding,
normalised here since their graphs do not do it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from core.model_card import ModelMetadata, metadata_from_props
from edge.reid.base import ReIDBackend, ReIDBackendError
from edge.reid.config import NormalizationConfig


def third_party_metadata(
    input_name: str, shape: list, norm: NormalizationConfig, input_size: Optional[tuple[int, int]], source: str
) -> ModelMetadata:
    """Metadata for an ONNX model that has none: NCHW float input, normalisation from config."""
    h, w = (shape[2], shape[3]) if len(shape) == 4 else (None, None)
    if input_size is not None:
        h, w = input_size
    if not isinstance(h, int) or not isinstance(w, int):
        raise ReIDBackendError(
            f"{source}: input {input_name} has no fixed height/width {shape}; set reid.input_size: [h, w]"
        )
    return ModelMetadata(
        input_name=input_name,
        input_height=h,
        input_width=w,
        layout="NCHW",
        dtype="float32",
        color_order=norm.color_order,
        mean=list(norm.mean) if norm.mean else None,
        std=list(norm.std) if norm.std else None,
        normalization="mean_std" if norm.mean else "scale_255",
        method="third_party",
        source=source,
    )


class OnnxRuntimeBackend(ReIDBackend):
    """An ONNX file on the CPU provider (or CUDA for ``device: cuda``), threads sized to the CPU
    budget of this process."""

    name = "onnxruntime"

    def __init__(
        self,
        path: str,
        device: str = "cpu",
        max_batch: int = 16,
        normalization: NormalizationConfig = NormalizationConfig(),
        input_size: Optional[tuple[int, int]] = None,
        threads: int = 0,
    ):
        from core.cpu_budget import session_threads
        from core.onnx_runner import ort_session

        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
        )
        self.threads, spin = session_threads(threads)  # sized to the CPUs this process may use, not the host's cores
        try:
            self.session = ort_session(path, providers, self.threads, spin)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ReIDBackendError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc
        first = self.session.get_inputs()[0]
        self.meta = metadata_from_props(self.session.get_modelmeta().custom_metadata_map) or third_party_metadata(
            first.name, list(first.shape), normalization, input_size, path
        )
        self.scale = normalization.scale
        self.max_batch = max_batch
        names = [o.name for o in self.session.get_outputs()]
        if self.meta.method == "third_party":
            self.outputs = names[:1]  # a third-party ReID model's embedding is its first output
        else:
            missing = [n for n in self.meta.outputs if n not in names]
            if missing:
                raise ReIDBackendError(
                    f"{path}: outputs: the metadata names {self.meta.outputs}, the model has {names}"
                )
            self.outputs = list(self.meta.outputs)
        out_dim = self.session.get_outputs()[0].shape[-1]
        if not self.meta.embedding_dim and isinstance(out_dim, int):
            self.meta.embedding_dim = out_dim

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.outputs, inputs)
