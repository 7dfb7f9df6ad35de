"""The person detector run from its exported file alone: ONNX Runtime or OpenVINO, no PyTorch.

An edge box runs what the export step wrote (``python -m export detector``, Ultralytics at export
time only): an ``.onnx`` file or an OpenVINO folder. What the decoding needs comes with the file,
as Ultralytics writes it: the input size, the class names and whether the batch is fixed, from the
ONNX model's metadata map or the OpenVINO folder's ``metadata.yaml``. The image in and the boxes
out are :mod:`edge.runtime.yolo_decode`'s, matched box for box against Ultralytics' own
predictions on the same file (``tests/test_exported_detector.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import yaml

from core.detector_card import DetectorCard, DetectorCardError, onnx_metadata_value, read_sidecar
from edge.runtime.types import Detections
from edge.runtime.yolo_decode import decode, to_input


class ExportedDetectorError(RuntimeError):
    """The file is not an exported YOLO detector this runtime can run; one line naming it."""


def _onnx_model(path: Path, threads: int, spin: bool) -> tuple[Callable[[np.ndarray], np.ndarray], DetectorCard]:
    from core.onnx_runner import ort_session

    try:
        session = ort_session(path, ["CPUExecutionProvider"], threads=threads, spin=spin)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own classes (InvalidProtobuf, Fail, ...)
        reason = next(iter(str(exc).splitlines()), "").split(" : ")[-1].strip()
        raise ExportedDetectorError(
            f"detector.weights: {path} is not a loadable ONNX model ({type(exc).__name__}: {reason})"
        ) from None
    meta = {k: onnx_metadata_value(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    name = session.get_inputs()[0].name
    return (lambda x: session.run(None, {name: x})[0]), DetectorCard.from_mapping(meta, str(path))


def _tensorrt_model(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], DetectorCard]:
    """An engine ``python -m export detector-engine`` built on this device, with its card beside it;
    device buffers from pycuda (no PyTorch)."""
    from core.tensorrt_runner import EngineRunner

    card = read_sidecar(path)
    if card is None:
        raise ExportedDetectorError(
            f"detector.weights: {path}: no {path.name}.detector.json beside it: build it with "
            "python -m export detector-engine (or run an Ultralytics engine with detector.backend: ultralytics)"
        )
    runner = EngineRunner(path)
    name = runner.inputs[0]
    return (lambda x: runner({name: x})[0]), card


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
        batch: bool = True,
    ):
        path = Path(weights)
        try:
            self.run, self.card = self._load(path, fmt, threads, spin)
        except DetectorCardError as exc:
            raise ExportedDetectorError(str(exc)) from None
        if self.card.end2end:
            raise ExportedDetectorError(
                f"detector.weights: {weights}: exported with NMS inside (end2end); export it without nms=True"
            )
        self.conf, self.iou, self.classes, self.batch = conf, iou, tuple(classes), batch

    @staticmethod
    def _load(
        path: Path, fmt: str, threads: int, spin: bool
    ) -> tuple[Callable[[np.ndarray], np.ndarray], DetectorCard]:
        if fmt == "onnx":
            return _onnx_model(path, threads, spin)
        if fmt == "openvino":
            return _openvino_model(path, threads)
        if fmt == "engine":
            return _tensorrt_model(path)
        raise ExportedDetectorError(f"detector.weights: {path}: a {fmt!r} file needs the Ultralytics backend")

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        """BGR images -> one :class:`Detections` per image (batched when the export and
        ``detector.batch`` allow)."""
        if not images:
            return []
        step = self.card.batch or (min(len(images), self.card.max_batch or len(images)) if self.batch else 1)
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
