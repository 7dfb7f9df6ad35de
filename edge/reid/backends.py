"""ReID backends: crops in, :class:`~trainer.embeddings.Embeddings` out, whatever runs the model.

Every backend reads the model's metadata (written by ``export``) to know the input size, the
layout and whether normalisation is baked into the graph; third-party ONNX models without it
(OSNet from BoxMOT, torchreid exports...) get the input size from the model's input shape (or
``reid.input_size``) and the normalisation from ``reid.normalization``. Crops are cut and resized
once, here, for all backends, so they agree on what the model sees.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from export.metadata import ModelMetadata, read_onnx_metadata
from trainer.embeddings import Embeddings

from ..config import NormalizationConfig, ReIDConfig

log = logging.getLogger(__name__)


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


def third_party_metadata(input_name: str, shape: list, norm: NormalizationConfig, input_size: Optional[tuple[int, int]], source: str) -> ModelMetadata:
    """Metadata for an ONNX model that has none: NCHW float input, normalisation from config."""
    h, w = (shape[2], shape[3]) if len(shape) == 4 else (None, None)
    if input_size is not None:
        h, w = input_size
    if not isinstance(h, int) or not isinstance(w, int):
        raise ReIDBackendError(f"{source}: input {input_name} has no fixed height/width {shape}; set reid.input_size: [h, w]")
    return ModelMetadata(input_name=input_name, input_height=h, input_width=w, layout="NCHW", dtype="float32",
                         color_order=norm.color_order, mean=list(norm.mean) if norm.mean else None,
                         std=list(norm.std) if norm.std else None,
                         normalization="mean_std" if norm.mean else "scale_255", method="third_party", source=source)


def to_model_input(crops: np.ndarray, meta: ModelMetadata, scale: float = 255.0) -> np.ndarray:
    """RGB uint8 NHWC crops -> what the model's input wants according to ``meta``."""
    if meta.layout == "NHWC" and meta.dtype == "uint8":
        return np.ascontiguousarray(crops if meta.color_order == "RGB" else crops[..., ::-1])
    x = crops if meta.color_order == "RGB" else crops[..., ::-1]
    x = x.astype(np.float32) / scale
    if meta.mean is not None:
        x = (x - np.float32(meta.mean)) / np.float32(meta.std or (1.0, 1.0, 1.0))
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
            chunks.append(Embeddings(*self._split(self._run(inputs), len(x))))
        return Embeddings.concat(chunks)

    def _split(self, result, n: int) -> tuple:
        """Backend outputs -> (global [n, D], parts or None, part_conf or None)."""
        outs = list(result) if isinstance(result, (list, tuple)) else [result]
        embedding = np.asarray(outs[0], np.float32).reshape(n, -1)
        if self.meta.num_parts and len(outs) >= 3:
            return embedding, np.asarray(outs[1], np.float32), np.asarray(outs[2], np.float32)
        return embedding, None, None

    def _run(self, inputs: dict[str, np.ndarray]):
        """One model batch -> the embedding, or [embedding, part_features, part_confidence]."""
        raise NotImplementedError


class OnnxRuntimeBackend(ReIDBackend):
    name = "onnxruntime"

    def __init__(self, path: str, device: str = "cpu", max_batch: int = 16, normalization: NormalizationConfig = NormalizationConfig(),
                 input_size: Optional[tuple[int, int]] = None, threads: int = 0):
        import onnxruntime as ort

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
        from export.onnx_runner import session_options

        options = session_options(path, threads)
        try:
            self.session = ort.InferenceSession(path, options, providers=[p for p in providers if p in ort.get_available_providers()])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ReIDBackendError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc
        first = self.session.get_inputs()[0]
        self.meta = read_onnx_metadata(path) or third_party_metadata(first.name, list(first.shape), normalization, input_size, path)
        self.scale = normalization.scale
        self.max_batch = max_batch
        names = [o.name for o in self.session.get_outputs()]
        self.outputs = [n for n in self.meta.outputs if n in names] or names[:1]  # third-party: the first output
        out_dim = self.session.get_outputs()[0].shape[-1]
        if not self.meta.embedding_dim and isinstance(out_dim, int):
            self.meta.embedding_dim = out_dim

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.outputs, inputs)


class TorchBackend(ReIDBackend):
    """Runs a training checkpoint through the same graph export traces (uint8 in, L2 out)."""

    name = "torch"

    def __init__(self, path: str, device: str = "cpu", max_batch: int = 16):
        import torch

        from export.onnx_export import build_graph, metadata_for
        from trainer.models.checkpoint import load_checkpoint

        self.torch = torch
        self.device = torch.device(device if device != "cuda" or torch.cuda.is_available() else "cpu")
        loaded = load_checkpoint(path)
        self.graph = build_graph(loaded).to(self.device).eval()
        self.meta = metadata_for(loaded, self.graph, "fp32", path)
        self.max_batch = max_batch

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            images = torch.from_numpy(inputs[self.meta.input_name]).to(self.device)
            cam = inputs.get(self.meta.camera_input) if self.meta.camera_input else None
            cam = torch.from_numpy(cam).to(self.device) if cam is not None else None
            result = self.graph(images, cam)
            return [t.float().cpu().numpy() for t in (result if isinstance(result, tuple) else (result,))]


class TensorRTBackend(ReIDBackend):
    name = "tensorrt"

    def __init__(self, path: str, max_batch: int = 16):
        from export.tensorrt_engine import EngineRunner

        self.runner = EngineRunner(path)
        if self.runner.metadata is None:
            raise ReIDBackendError(f"{path}: no metadata sidecar {path}.json next to the engine (written by python -m export trt)")
        self.meta = self.runner.metadata
        self.max_batch = min(max_batch, int(self.runner.batch_range[1]))

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.runner(inputs)


def build_backend(cfg: ReIDConfig) -> ReIDBackend:
    if not Path(cfg.model).exists():
        raise ReIDBackendError(f"ReID model not found: {cfg.model}")
    if cfg.backend == "onnxruntime":
        return OnnxRuntimeBackend(cfg.model, cfg.device, cfg.batch_size, cfg.normalization, cfg.input_size)
    if cfg.backend == "torch":
        return TorchBackend(cfg.model, cfg.device, cfg.batch_size)
    return TensorRTBackend(cfg.model, cfg.batch_size)
