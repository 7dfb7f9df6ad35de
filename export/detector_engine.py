"""An exported ONNX person detector -> TensorRT engine on the device, without PyTorch.

On a Jetson the runtime has no PyTorch and no Ultralytics: the detector arrives as the ONNX file
``python -m export detector --format onnx`` wrote on any machine (Ultralytics at export time
only), and this builds the engine where it will run (engines are tied to the GPU and TensorRT
version). Beside the engine goes its card, ``<engine>.detector.json`` (input size, classes, the
engine's batch range, from the ONNX's Ultralytics metadata), which the runtime reads to letterbox
and decode. The engine is then checked against ONNX Runtime on the same frames, on the raw
output: for every candidate ONNX Runtime scores at or above ``conf``, the engine's box must be
within ``max_px`` pixels and its score within ``max_score``, or the engine is removed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from core.detector_card import DetectorCard, onnx_metadata_value, write_sidecar
from export.tensorrt_engine import BatchProfile, serialize_engine


@dataclass
class DetectorParity:
    candidates: int  # ONNX Runtime's outputs scoring >= conf on the check frames
    worst_box_px: float
    worst_score: float
    max_px: float
    max_score: float

    @property
    def passed(self) -> bool:
        return self.candidates > 0 and self.worst_box_px <= self.max_px and self.worst_score <= self.max_score

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{verdict}: {self.candidates} candidates, box within {self.worst_box_px:.2f} px "
            f"(limit {self.max_px}), score within {self.worst_score:.4f} (limit {self.max_score})"
        )


def onnx_card(onnx_path: str | Path) -> DetectorCard:
    from core.onnx_runner import ort_session

    session = ort_session(Path(onnx_path), ["CPUExecutionProvider"])
    meta = {k: onnx_metadata_value(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    return DetectorCard.from_mapping(meta, str(onnx_path))


def check_frames(imgsz: tuple[int, int], count: int, folder: Optional[Path] = None) -> np.ndarray:
    """``count`` frames as the detector's input (NCHW float 0..1, resized): the images of
    ``folder``, else frames of the synthetic demo scene (people in them)."""
    images: list[np.ndarray]
    if folder is not None:
        read = (cv2.imread(str(p)) for p in sorted(folder.iterdir()) if p.suffix.lower() in (".jpg", ".png"))
        images = [im for im in read if im is not None][:count]
        if not images:
            raise ValueError(f"{folder}: no readable .jpg or .png images")
    else:
        from sim.render import CameraRenderer
        from sim.scene import World, resolve_scene

        world = World(resolve_scene("demo"))
        renderer = CameraRenderer(world, 0)
        images = [renderer.render(20 + 37 * i)[0] for i in range(count)]
    h, w = imgsz
    batch = [cv2.cvtColor(cv2.resize(im, (w, h)), cv2.COLOR_BGR2RGB).transpose(2, 0, 1) for im in images]
    return np.stack(batch).astype(np.float32) / 255.0


def compare_outputs(
    reference: np.ndarray, candidate: np.ndarray, conf: float, max_px: float = 2.0, max_score: float = 0.05
) -> DetectorParity:
    """Raw YOLO outputs [B, 4 + classes, anchors]: the candidates ``reference`` scores >= ``conf``."""
    ref_scores = reference[:, 4:].max(1)
    keep = ref_scores >= conf
    if not keep.any():
        return DetectorParity(0, 0.0, 0.0, max_px, max_score)
    box_diff = np.abs(reference[:, :4] - candidate[:, :4]).max(1)[keep]
    score_diff = np.abs(ref_scores - candidate[:, 4:].max(1))[keep]
    return DetectorParity(int(keep.sum()), float(box_diff.max()), float(score_diff.max()), max_px, max_score)


def build_detector_engine(
    onnx_path: str | Path,
    out: str | Path,
    fp16: bool = True,
    batch: BatchProfile = BatchProfile(1, 4, 8),
    workspace_gb: float = 2.0,
    images: Optional[Path] = None,
    conf: float = 0.25,
) -> tuple[Path, DetectorParity]:
    """Engine + card; the engine is removed when parity fails."""
    from core.onnx_runner import ort_session
    from core.tensorrt_runner import EngineRunner

    card = onnx_card(onnx_path)
    if card.batch:  # a fixed-batch export: the engine takes exactly that batch
        batch = BatchProfile(card.batch, card.batch, card.batch)
    elif batch.min != 1:
        profile = f"{batch.min}:{batch.opt}:{batch.max}"
        raise ValueError(f"batch {profile}: a detector engine takes any number of cameras from 1 (MIN 1)")
    out = Path(out)
    out.write_bytes(serialize_engine(onnx_path, fp16, batch, workspace_gb, input_shape=(3, *card.imgsz)))
    write_sidecar(out, replace(card, batch=card.batch, max_batch=batch.max))
    frames = check_frames(card.imgsz, card.batch or min(batch.max, 4), images)
    session = ort_session(Path(onnx_path), ["CPUExecutionProvider"])
    reference = session.run(None, {session.get_inputs()[0].name: frames})[0]
    runner = EngineRunner(out)
    report = compare_outputs(reference, runner({runner.inputs[0]: frames})[0], conf)
    if not report.passed:
        out.unlink()
    return out, report
