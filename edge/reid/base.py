"""The base every ReID backend stands on: crops in, :class:`~core.embeddings.Embeddings` out.

A backend only runs one model batch (:meth:`ReIDBackend._run`); everything around it lives here
so all backends agree on what the model sees and what it must return:

- crops are cut and resized once (:func:`cut_crops`) and turned into the model's input by its
  metadata (:func:`to_model_input`: layout, dtype, colour order, normalisation), written by
  ``export`` (:mod:`core.model_card`) or, for third-party models, taken from configuration;
- the outputs are split into global / part features and checked at load against the metadata
  (:meth:`ReIDBackend.check_contract`, :func:`contract_problems`), so a model that breaks its
  card is refused with one line instead of half-working later.

The backends themselves, one per file: :mod:`edge.reid.onnxruntime_backend`,
:mod:`edge.reid.torch_backend`, :mod:`edge.reid.tensorrt_backend`; :func:`edge.reid.build_backend`
picks the configured one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import cv2
import numpy as np

from core.embeddings import Embeddings
from core.model_card import ModelMetadata

# What one model batch returns: the embedding alone, or [embedding, part_features, part_confidence]
RunResult = Union[np.ndarray, Sequence[np.ndarray]]


class ReIDBackendError(RuntimeError):
    """A ReID model that cannot be used as configured."""


def cut_crops(image: np.ndarray, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """BGR frame + xyxy boxes [N, 4] -> RGB uint8 crops [N, height, width, 3]."""
    H, W = image.shape[:2]
    out = np.empty((len(boxes), height, width, 3), np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float32)):
        x0, y0 = int(np.clip(np.floor(x0), 0, W - 1)), int(np.clip(np.floor(y0), 0, H - 1))
        x1, y1 = int(np.clip(np.ceil(x1), x0 + 1, W)), int(np.clip(np.ceil(y1), y0 + 1, H))
        out[i] = cv2.resize(image[y0:y1, x0:x1], (width, height), interpolation=cv2.INTER_LINEAR)[..., ::-1]
    return out


def to_model_input(crops: np.ndarray, meta: ModelMetadata, scale: float = 255.0) -> np.ndarray:
    """RGB uint8 NHWC crops -> what the model's input wants according to ``meta``."""
    if meta.layout == "NHWC" and meta.dtype == "uint8":
        return np.ascontiguousarray(crops if meta.color_order == "RGB" else crops[..., ::-1])
    x = crops if meta.color_order == "RGB" else crops[..., ::-1]
    x = x.astype(np.float32) / scale
    if meta.mean is not None:
        x = (x - np.asarray(meta.mean, np.float32)) / np.asarray(meta.std or (1.0, 1.0, 1.0), np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class ReIDBackend:
    """Base: subclasses set ``self.meta`` and implement :meth:`_run` on one model batch."""

    name = "base"
    meta: ModelMetadata
    max_batch: int = 16
    scale: float = 255.0

    @property
    def input_size(self) -> tuple[int, int]:
        return self.meta.input_height, self.meta.input_width

    def crops(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return cut_crops(image, boxes, *self.input_size)

    def embed(self, crops: np.ndarray, cameras: Optional[np.ndarray] = None) -> Embeddings:
        """RGB uint8 crops [N, h, w, 3] (+ SIE camera indices [N]) -> L2-normalised embeddings."""
        if len(crops) == 0:
            return Embeddings(np.zeros((0, max(1, self.meta.embedding_dim)), np.float32))
        chunks = []
        for s in range(0, len(crops), self.max_batch):
            x = to_model_input(crops[s : s + self.max_batch], self.meta, self.scale)
            inputs = {self.meta.input_name: x}
            if self.meta.camera_input:
                cams = cameras[s : s + self.max_batch] if cameras is not None else np.zeros(len(x))
                inputs[self.meta.camera_input] = np.asarray(cams, np.int64)
            outputs = self._split(self._run(inputs), len(x))
            # our exports are normalised inside the graph (checked at load); third-party graphs are not
            chunks.append(
                Embeddings.normalized(*outputs) if self.meta.method == "third_party" else Embeddings(*outputs)
            )
        return Embeddings.concat(chunks)

    def _run(self, inputs: dict[str, np.ndarray]) -> RunResult:
        """One model batch -> the embedding, or [embedding, part_features, part_confidence]."""
        raise NotImplementedError

    def _split(self, result: RunResult, n: int) -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
        """Backend outputs -> (global [n, D], parts or None, part_conf or None)."""
        outs = list(result) if isinstance(result, (list, tuple)) else [result]
        embedding = np.asarray(outs[0], np.float32).reshape(n, -1)
        if self.meta.num_parts:  # checked at load (check_contract): the part outputs are there
            return embedding, np.asarray(outs[1], np.float32), np.asarray(outs[2], np.float32)
        return embedding, None, None

    def check_contract(self, source: str) -> None:
        """Run one probe batch and refuse a model that does not return what its metadata promises
        (one line naming the model file and the field) instead of half-working later."""
        h, w = self.input_size
        crops = np.random.default_rng(0).integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        x = to_model_input(crops, self.meta, self.scale)
        inputs = {self.meta.input_name: x}
        if self.meta.camera_input:
            inputs[self.meta.camera_input] = np.zeros(2, np.int64)
        try:
            result = self._run(inputs)
        except Exception as exc:  # noqa: BLE001 - any runtime's error becomes one line
            raise ReIDBackendError(f"{source}: the model fails on a probe batch of 2 crops {h}x{w}: {exc}") from exc
        outs = list(result) if isinstance(result, (list, tuple)) else [result]
        for problem in contract_problems(self.meta, [np.asarray(o) for o in outs]):
            raise ReIDBackendError(f"{source}: {problem}")


def contract_problems(meta: ModelMetadata, outs: list[np.ndarray]) -> list[str]:
    """What a probe batch of 2 crops says against the metadata (empty when the model keeps it)."""
    third_party = meta.method == "third_party"
    expected = 1 if third_party else max(1, len(meta.outputs))
    if len(outs) < expected:
        return [f"outputs: the metadata names {meta.outputs}, the model returns {len(outs)} output(s)"]
    emb = outs[0].reshape(2, -1)
    if meta.embedding_dim and emb.shape[1] != meta.embedding_dim:
        return [f"embedding_dim: the metadata says {meta.embedding_dim}, the model returns {emb.shape[1]}"]
    if not third_party:
        norms = np.linalg.norm(emb.astype(np.float64), axis=1)
        if np.abs(norms - 1.0).max() > 1e-2:
            return [
                "normalization: the exported graph must return L2-normalised embeddings, "
                f"norms are {np.round(norms, 3).tolist()}"
            ]
    if meta.num_parts:
        if len(outs) < 3:
            return [f"num_parts: the metadata says {meta.num_parts} parts, the model returns no part outputs"]
        parts, conf = outs[1], outs[2]
        if parts.ndim != 3 or parts.shape[1] != meta.num_parts or conf.shape != (2, meta.num_parts):
            return [
                f"num_parts: the metadata says {meta.num_parts}, the model returns parts {list(parts.shape)} "
                f"and confidences {list(conf.shape)}"
            ]
        if meta.part_dim and parts.shape[2] != meta.part_dim:
            return [f"part_dim: the metadata says {meta.part_dim}, the model returns {parts.shape[2]}"]
    return []
