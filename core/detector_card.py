"""What an exported person detector says about itself: input size, classes, batch.

Ultralytics writes it into the export (the ONNX model's metadata map, an OpenVINO folder's
``metadata.yaml``); a TensorRT engine built from that ONNX by ``python -m export detector-engine``
carries it in a sidecar, ``<engine>.detector.json``. The exporter writes the card and the edge
runtime reads it, so it lives here, below both.
"""

from __future__ import annotations

import ast
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional


class DetectorCardError(ValueError):
    """No usable card: one line naming the file."""


@dataclass(frozen=True)
class DetectorCard:
    imgsz: tuple[int, int]
    names: dict[int, str]
    batch: int  # the fixed batch of the export; 0 when dynamic
    end2end: bool = False
    max_batch: int = 0  # the largest batch a dynamic engine's profile takes; 0: no limit

    @classmethod
    def from_mapping(cls, meta: dict, source: str) -> DetectorCard:
        """From Ultralytics' parsed metadata; a missing ``imgsz`` or ``names`` names ``source``."""
        if "imgsz" not in meta or "names" not in meta:
            raise DetectorCardError(
                f"{source}: no Ultralytics export metadata (imgsz, names): export it with python -m export detector"
            )
        imgsz = meta["imgsz"]
        size = (int(imgsz[0]), int(imgsz[-1])) if isinstance(imgsz, (list, tuple)) else (int(imgsz), int(imgsz))
        args = meta.get("args") or {}
        dynamic = bool(meta.get("dynamic", args.get("dynamic", False)))
        batch = 0 if dynamic else int(meta.get("batch", args.get("batch", 1)))
        names = {int(k): str(v) for k, v in meta["names"].items()}
        end2end = bool(meta.get("end2end", False)) or bool(args.get("nms", False))
        return cls(size, names, batch, end2end, int(meta.get("max_batch", 0)))


def onnx_metadata_value(text: str) -> object:
    """An ONNX metadata value as Ultralytics writes it (``str()`` of a Python value)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def sidecar_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".detector.json")


def write_sidecar(engine: str | Path, card: DetectorCard) -> Path:
    path = sidecar_path(engine)
    path.write_text(json.dumps(asdict(card), indent=1) + "\n")
    return path


def read_sidecar(engine: str | Path) -> Optional[DetectorCard]:
    """The card beside an engine, or None when there is none (an Ultralytics engine)."""
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    try:
        return DetectorCard.from_mapping(json.loads(path.read_text()), str(path))
    except json.JSONDecodeError as exc:
        raise DetectorCardError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
