"""Numerical parity between PyTorch and an exported model, on person crops.

The tolerance is a per-image cosine between the two embeddings (and, for part-based methods,
between each part feature): >= 0.9999 for FP32 ONNX, >= 0.999 for FP16 (ONNX or TensorRT).
Part confidences count in the max |diff|. Every export is checked; a failed check fails the command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import cv2
import numpy as np

from core.model_card import ModelMetadata

if TYPE_CHECKING:  # torch only for the PyTorch reference: an engine checked against ONNX Runtime on a
    import torch  # Jetson needs no PyTorch

FP32_MIN_COSINE = 0.9999
FP16_MIN_COSINE = 0.999


@dataclass
class ParityReport:
    backend: str
    num_images: int
    min_cosine: float
    mean_cosine: float
    max_abs_diff: float
    threshold: float

    @property
    def passed(self) -> bool:
        return self.min_cosine >= self.threshold

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{self.backend}: {verdict}  cosine min {self.min_cosine:.6f} mean {self.mean_cosine:.6f} "
            f"(threshold {self.threshold})  max |diff| {self.max_abs_diff:.2e}  on {self.num_images} images"
        )


def read_bgr(path: Path) -> np.ndarray:
    """The BGR image at ``path``; a file OpenCV cannot decode is an error, named."""
    image = cv2.imread(str(path))
    if image is None:
        raise ValueError(f"{path}: not an image OpenCV can decode")
    return image


def person_crops(n: int, height: int, width: int, seed: int = 0, folder: Optional[Path] = None) -> np.ndarray:
    """uint8 [n, H, W, 3] RGB crops: images from ``folder`` if given, else synthetic people."""
    if folder is not None:
        paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})[:n]
        if not paths:
            raise FileNotFoundError(f"no images in {folder}")
        crops = [
            cv2.resize(cv2.cvtColor(read_bgr(p), cv2.COLOR_BGR2RGB), (width, height), interpolation=cv2.INTER_LINEAR)
            for p in paths
        ]
        return np.stack(crops)
    from sim.people import CameraLook, PersonAppearance, render_crop

    rng = np.random.default_rng(seed)
    look = CameraLook.sample(rng)
    return np.stack(
        [
            render_crop(PersonAppearance.sample(rng), look, height, width, rng, occlude=bool(i % 3 == 2))
            for i in range(n)
        ]
    )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return (a * b).sum(-1)


def as_outputs(result) -> list[np.ndarray]:
    """A model's output(s) as a list of arrays: [embedding, (part_features, part_confidence)]."""
    if isinstance(result, (list, tuple)):
        return [np.asarray(r) for r in result]
    return [np.asarray(result)]


def compare(reference, candidate, backend: str, threshold: float) -> ParityReport:
    ref, cand = as_outputs(reference), as_outputs(candidate)
    if len(ref) != len(cand):
        raise ValueError(f"{backend}: {len(cand)} outputs, the reference has {len(ref)}")
    cos = _cosines(ref[0], cand[0])
    per_image = cos
    if len(ref) > 1:  # part features: the worst part counts for the image
        per_image = np.minimum(cos, _cosines(ref[1], cand[1]).min(axis=1))
    diff = max(float(np.abs(r.astype(np.float32) - c.astype(np.float32)).max()) for r, c in zip(ref, cand))
    return ParityReport(backend, len(cos), float(per_image.min()), float(per_image.mean()), diff, threshold)


def feed(meta: ModelMetadata, images: np.ndarray, cameras: Optional[np.ndarray]) -> dict[str, np.ndarray]:
    inputs = {meta.input_name: images}
    if meta.camera_input:
        inputs[meta.camera_input] = (cameras if cameras is not None else np.zeros(len(images))).astype(np.int64)
    return inputs


def torch_reference(graph: torch.nn.Module, images: np.ndarray, cameras: Optional[np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        cam = torch.from_numpy(cameras.astype(np.int64)) if cameras is not None else None
        return [t.numpy() for t in as_tensors(graph(torch.from_numpy(images), cam))]


def as_tensors(result) -> tuple[torch.Tensor, ...]:
    return tuple(result) if isinstance(result, (list, tuple)) else (result,)


def check_backend(
    run: Callable[[dict[str, np.ndarray]], list[np.ndarray]],
    reference,
    meta: ModelMetadata,
    images: np.ndarray,
    cameras: Optional[np.ndarray],
    backend: str,
    threshold: float,
    batch: int = 8,
) -> ParityReport:
    chunks = [
        as_outputs(run(feed(meta, images[i : i + batch], None if cameras is None else cameras[i : i + batch])))
        for i in range(0, len(images), batch)
    ]
    outputs = [np.concatenate(parts) for parts in zip(*chunks)]
    return compare(reference, outputs, backend, threshold)
