"""Person detection with Ultralytics YOLO: the frames of all cameras in one call.

Ultralytics is told, before it is first imported (it reads these at import), to stay quiet and
offline: no pip "AutoUpdate" of a missing package at run time (an edge box installs what it runs,
through the extras: ``core/extras.py``), no DNS probe for being online, no settings banner.
Each is only a default: set ``YOLO_AUTOINSTALL``, ``YOLO_OFFLINE`` or ``YOLO_VERBOSE`` in the
environment to have Ultralytics' own behaviour back.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.extras import DETECTOR_FORMATS, require
from edge.runtime.config import DetectorConfig, weights_format
from edge.runtime.types import Detections

ULTRALYTICS_ENV = {"YOLO_AUTOINSTALL": "False", "YOLO_OFFLINE": "True", "YOLO_VERBOSE": "False"}
for _name, _value in ULTRALYTICS_ENV.items():
    os.environ.setdefault(_name, _value)

log = logging.getLogger(__name__)


class DetectorError(RuntimeError):
    """Detector weights Ultralytics cannot load or run; the message is one line naming the file."""


ULTRALYTICS_DECORATION = " ❌️\ufe0f"  # the characters before the reason of Ultralytics' ERROR line


def load_error(weights: str, exc: BaseException) -> DetectorError:
    """Ultralytics' load failure as one line: its first line without the ``ERROR ❌️`` decoration
    (its second line recommends its own CLI and models, which is not what this runtime runs)."""
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    reason = first.replace("ERROR", "", 1).lstrip(ULTRALYTICS_DECORATION) if first.startswith("ERROR") else first
    if str(weights) in reason:
        return DetectorError(f"detector.weights: {reason}")
    return DetectorError(
        f"detector {weights}: Ultralytics cannot load or run it ({type(exc).__name__}{': ' + reason if reason else ''})"
    )


LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a"  # torch.save before 1.6: a pickle opening with its magic number


def checkpoint_problem(weights: str) -> str | None:
    """Why a ``.pt`` file cannot be a PyTorch checkpoint, or None.

    A checkpoint is a zip archive (``torch.save`` since 1.6) or, older, a pickle that opens with
    torch's magic number. Anything else is refused here, before ``torch.load`` unpickles bytes
    that may ask for gigabytes (a MemoryError) or execute opcodes in whatever order they come."""
    path = Path(weights)
    if path.suffix.lower() != ".pt" or not path.is_file():
        return None
    if zipfile.is_zipfile(path):
        return None
    with path.open("rb") as f:
        head = f.read(len(LEGACY_TORCH_MAGIC))
    if head == LEGACY_TORCH_MAGIC:
        return None
    what = "empty" if not head else "neither the zip archive torch.save writes nor its older pickle"
    return f"detector.weights: {weights} is not a loadable checkpoint — {what}"


class Detector(Protocol):
    """What the pipeline calls: BGR images in, one :class:`Detections` per image out."""

    def __call__(self, images: list[np.ndarray]) -> list[Detections]: ...


def build_detector(cfg: DetectorConfig) -> Detector:
    """The detector a camera file asks for: Ultralytics (any format it loads), or the exported
    file run directly (``detector.backend: exported``, or ``auto`` for .onnx and OpenVINO), with
    threads sized to the process's CPUs."""
    if cfg.runs_on() == "ultralytics":
        return PersonDetector.from_config(cfg)
    from core.cpu_budget import session_threads
    from edge.runtime.exported_detector import ExportedDetector, ExportedDetectorError

    fmt = weights_format(cfg.weights)
    if fmt in DETECTOR_FORMATS:
        # our engine's device buffers come from pycuda (Ultralytics' own engines use PyTorch's)
        needs = DETECTOR_FORMATS[fmt] + ((("pycuda", "trt"),) if fmt == "engine" else ())
        require(f"the {fmt} detector {cfg.weights}", needs)
    threads, spin = session_threads()
    try:
        return ExportedDetector(cfg.weights, fmt, cfg.conf, cfg.iou, cfg.classes, threads, spin, cfg.batch)
    except ExportedDetectorError as exc:
        raise DetectorError(str(exc)) from None


class PersonDetector:
    """Wraps ``ultralytics.YOLO`` for any format it loads (.pt, .onnx, .engine, OpenVINO folder).

    The weights are loaded and run once on a blank image here, so a file Ultralytics cannot use
    (corrupt, truncated, another task) is refused at start with one line instead of a trace from
    the first frame."""

    def __init__(
        self,
        weights: str,
        imgsz: int = 640,
        conf: float = 0.25,
        iou: float = 0.7,
        device: str = "cpu",
        half: bool = False,
        classes: Sequence[int] = (0,),
        batch: bool = True,
    ):
        fmt = weights_format(weights)
        if fmt in DETECTOR_FORMATS:
            require(f"the {fmt} detector {weights}", DETECTOR_FORMATS[fmt])
        if fmt == "openvino" and Path(weights).is_dir() and not any(Path(weights).glob("*.xml")):
            raise DetectorError(f"detector.weights: {weights}: no OpenVINO model (*.xml) in this folder")
        problem = checkpoint_problem(weights)
        if problem:
            raise DetectorError(problem)
        from ultralytics import YOLO

        self.kwargs: dict[str, Any] = dict(
            imgsz=imgsz, conf=conf, iou=iou, device=device, classes=list(classes), verbose=False
        )
        if half:  # newer Ultralytics warn on every call when half is passed at all
            self.kwargs["half"] = True
        self.batch = batch
        try:
            self.model = YOLO(weights, task="detect")
            self.model.predict(np.zeros((imgsz, imgsz, 3), np.uint8), **self.kwargs)  # formats other than .pt load here
        except (Exception, MemoryError) as exc:  # noqa: BLE001 - TypeError, StopIteration, MemoryError, ... for a bad file
            log.debug("detector %s failed to load", weights, exc_info=True)
            raise load_error(weights, exc) from exc

    @classmethod
    def from_config(cls, cfg: DetectorConfig) -> PersonDetector:
        return cls(cfg.weights, cfg.imgsz, cfg.conf, cfg.iou, cfg.device, cfg.half, cfg.classes, cfg.batch)

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        """BGR images -> one :class:`Detections` per image."""
        if not images:
            return []
        results = self._predict(images) if self.batch else [self._predict(img)[0] for img in images]
        out = []
        for r in results:
            boxes = r.boxes.cpu().numpy()
            out.append(Detections(boxes.xyxy.astype(np.float32), boxes.conf.astype(np.float32)))
        return out

    def _predict(self, source: np.ndarray | list[np.ndarray]) -> list[Any]:
        """Ultralytics' Results, one per image (its annotations also allow tensors and a stream,
        which ``predict`` gives for other arguments than ours)."""
        return list(self.model.predict(source, **self.kwargs))
