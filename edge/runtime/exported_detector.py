"""The person detector run from its exported file alone: ONNX Runtime or OpenVINO, no PyTorch.

An edge box runs what the export step wrote (``python -m export detector``, Ultralytics at export
time only): an ``.onnx`` file or an OpenVINO folder. What the decoding needs comes with the file,
as Ultralytics writes it: the input size, the class names and whether the batch is fixed, from the
ONNX model's metadata map or the OpenVINO folder's ``metadata.yaml``. The image in and the boxes
out are :mod:`edge.runtime.yolo_decode`'s, matched box for box against Ultralytics' own
predictions on the same file (``tests/test_exported_detector.py``).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from edge.runtime.types import Detections
from edge.runtime.yolo_decode import decode, to_input


class ExportedDetectorError(RuntimeError):
    """The file is not an exported YOLO detector this runtime can run; one line naming it."""


@dataclass(frozen=True)
class DetectorCard:
    """What an exported detector says about itself (Ultralytics' export metadata)."""

    imgsz: tuple[int, int]
    names: dict[int, str]
    batch: int  # the fixed batch of the export; 0 when dynamic
    end2end: bool = False

    @classmethod
    def from_mapping(cls, meta: dict, source: str) -> DetectorCard:
        """From the parsed metadata; a missing ``imgsz`` or ``names`` is an error naming ``source``."""
        if "imgsz" not in meta or "names" not in meta:
            raise ExportedDetectorError(
                f"{source}: no Ultralytics export metadata (imgsz, names): export it with python -m export detector"
            )
        imgsz = meta["imgsz"]
        size = (int(imgsz[0]), int(imgsz[-1])) if isinstance(imgsz, (list, tuple)) else (int(imgsz), int(imgsz))
        args = meta.get("args") or {}
        dynamic = bool(meta.get("dynamic", args.get("dynamic", False)))
        batch = 0 if dynamic else int(meta.get("batch", args.get("batch", 1)))
        names = {int(k): str(v) for k, v in meta["names"].items()}
        end2end = bool(meta.get("end2end", False)) or bool(args.get("nms", False))
        return cls(size, names, batch, end2end)


def _literal(text: str) -> object:
    """An ONNX metadata value as Ultralytics writes it (``str()`` of a Python value)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _onnx_model(path: Path, threads: int, spin: bool) -> tuple[Callable[[np.ndarray], np.ndarray], DetectorCard]:
    from core.onnx_runner import ort_session

    session = ort_session(path, ["CPUExecutionProvider"], threads=threads, spin=spin)
    meta = {k: _literal(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    name = session.get_inputs()[0].name
    return (lambda x: session.run(None, {name: x})[0]), DetectorCard.from_mapping(meta, str(path))


def _openvino_model(path: Path, threads: int) -> tuple[Callable[[np.ndarray], np.ndarray], DetectorCard]:
    import openvino as ov

    folder = path if path.is_dir() else path.parent
    xml = path if path.suffix == ".xml" else next(iter(sorted(folder.glob("*.xml"))), None)
    if xml is None:
        raise ExportedDetectorError(f"detector.weights: {path}: no OpenVINO model (*.xml) in this folder")
    card_file = folder / "metadata.yaml"
    meta = yaml.safe_load(card_file.read_text()) if card_file.is_file() else {}
    config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
    compiled = ov.Core().compile_model(str(xml), "CPU", config)
    return (lambda x: compiled(x)[0]), DetectorCard.from_mapping(meta or {}, str(card_file))


class ExportedDetector:
    """Persons in BGR frames from an exported YOLO file; same call as the Ultralytics detector."""

    def __init__(
        self,
        weights: str,
        fmt: str,
        conf: float = 0.25,
        iou: float = 0.7,
        classes: Sequence[int] = (0,),
        threads: int = 0,
        spin: bool = True,
    ):
        path = Path(weights)
        if fmt == "onnx":
            self.run, self.card = _onnx_model(path, threads, spin)
        elif fmt == "openvino":
            self.run, self.card = _openvino_model(path, threads)
        else:
            raise ExportedDetectorError(f"detector.weights: {weights}: a {fmt!r} file needs the Ultralytics backend")
        if self.card.end2end:
            raise ExportedDetectorError(
                f"detector.weights: {weights}: exported with NMS inside (end2end); export it without nms=True"
            )
        self.conf, self.iou, self.classes = conf, iou, tuple(classes)

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        """BGR images -> one :class:`Detections` per image (batched when the export allows)."""
        if not images:
            return []
        step = self.card.batch or len(images)
        out: list[Detections] = []
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            x, boxes = to_input(chunk, self.card.imgsz)
            if self.card.batch and len(chunk) < self.card.batch:  # a fixed batch: fill it with blank images
                x = np.concatenate([x, np.zeros((self.card.batch - len(chunk), *x.shape[1:]), x.dtype)])
            raw = self.run(x)
            for i, box in enumerate(boxes):
                xyxy, score, _ = decode(raw[i], box, self.conf, self.iou, self.classes)
                out.append(Detections(xyxy, score))
        return out
