"""ReID backends: crops in, :class:`~core.embeddings.Embeddings` out, whatever runs the model.

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

from core.embeddings import Embeddings
from core.model_card import ModelMetadata, metadata_from_props
from edge.runtime.config import NormalizationConfig, ReIDConfig

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
            outputs = self._split(self._run(inputs), len(x))
            # our exports are normalised inside the graph (checked at load); third-party graphs are not
            chunks.append(
                Embeddings.normalized(*outputs) if self.meta.method == "third_party" else Embeddings(*outputs)
            )
        return Embeddings.concat(chunks)

    def _run(self, inputs: dict[str, np.ndarray]):
        """One model batch -> the embedding, or [embedding, part_features, part_confidence]."""
        raise NotImplementedError

    def _split(self, result, n: int) -> tuple:
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
                f"normalization: the exported graph must return L2-normalised embeddings, norms are {np.round(norms, 3).tolist()}"
            ]
    if meta.num_parts:
        if len(outs) < 3:
            return [f"num_parts: the metadata says {meta.num_parts} parts, the model returns no part outputs"]
        parts, conf = outs[1], outs[2]
        if parts.ndim != 3 or parts.shape[1] != meta.num_parts or conf.shape != (2, meta.num_parts):
            return [
                f"num_parts: the metadata says {meta.num_parts}, the model returns parts {list(parts.shape)} and confidences {list(conf.shape)}"
            ]
        if meta.part_dim and parts.shape[2] != meta.part_dim:
            return [f"part_dim: the metadata says {meta.part_dim}, the model returns {parts.shape[2]}"]
    return []


class OnnxRuntimeBackend(ReIDBackend):
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
        from core.onnx_runner import ort_session
        from edge.runtime.cpu_budget import session_threads

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
        from core.tensorrt_runner import EngineRunner

        self.runner = EngineRunner(path)
        if self.runner.metadata is None:
            raise ReIDBackendError(
                f"{path}: no metadata sidecar {path}.json next to the engine (written by python -m export trt)"
            )
        self.meta = self.runner.metadata
        self.max_batch = min(max_batch, int(self.runner.batch_range[1]))

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.runner(inputs)


def build_backend(cfg: ReIDConfig) -> ReIDBackend:
    """The configured backend, refused at load when the model does not keep its metadata's contract."""
    if not Path(cfg.model).exists():
        raise ReIDBackendError(f"ReID model not found: {cfg.model}")
    if cfg.backend == "onnxruntime":
        backend: ReIDBackend = OnnxRuntimeBackend(
            cfg.model, cfg.device, cfg.batch_size, cfg.normalization, cfg.input_size
        )
    elif cfg.backend == "torch":
        backend = TorchBackend(cfg.model, cfg.device, cfg.batch_size)
    else:
        backend = TensorRTBackend(cfg.model, cfg.batch_size)
    backend.check_contract(cfg.model)
    return backend
