"""Model metadata: what an edge backend needs to feed a ReID model and read its outputs.

Written by export into the ONNX ``metadata_props`` (key ``clipreid_edge``, one JSON string) and
into the TensorRT engine's sidecar ``<engine>.json``; read by every edge backend instead of
guessing. Third-party models without it get the same fields from configuration.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

METADATA_KEY = "clipreid_edge"
METADATA_VERSION = 1


@dataclass
class ModelMetadata:
    input_name: str = "images"
    input_height: int = 256
    input_width: int = 128
    layout: str = "NHWC"  # NHWC uint8 (normalisation baked into the graph) or NCHW float
    dtype: str = "uint8"
    color_order: str = "RGB"
    mean: Optional[list[float]] = None  # None: baked into the graph
    std: Optional[list[float]] = None
    normalization: str = "baked"  # baked | mean_std | scale_255
    outputs: list[str] = field(default_factory=lambda: ["embedding"])
    embedding_dim: int = 0
    num_parts: int = 0
    part_dim: int = 0  # width of each part feature (part-based methods)
    method: str = "baseline"
    camera_input: Optional[str] = None  # name of the int64 [B] camera-index input when the model uses SIE
    num_cameras: int = 0
    precision: str = "fp32"
    # same-/different-person cosine statistics measured at training time and the matching
    # threshold they give: {same_mean, same_std, diff_mean, diff_std, threshold, false_match_rate, ...}
    similarity: Optional[dict] = None
    version: int = METADATA_VERSION
    source: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        data = json.loads(text)
        if data.get("version", 0) > METADATA_VERSION:
            raise ValueError(f"model metadata version {data['version']} is newer than this code ({METADATA_VERSION})")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def write_sidecar(self, engine_path: Path) -> Path:
        path = sidecar_path(engine_path)
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        return path


def sidecar_path(engine_path: str | Path) -> Path:
    return Path(str(engine_path) + ".json")


def read_onnx_metadata(onnx_path: str | Path) -> Optional[ModelMetadata]:
    """The metadata export wrote, or None for third-party ONNX models.

    Read through ONNX Runtime (an unoptimised session: no graph rewriting), which both the edge
    and the training installs have, so building engines on an edge box needs no ``onnx`` package.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return metadata_from_props(session.get_modelmeta().custom_metadata_map)


def metadata_from_props(props: dict[str, str]) -> Optional[ModelMetadata]:
    """The metadata in an ONNX model's ``metadata_props`` map, or None (third-party model).

    The edge reads the map ONNX Runtime already parsed (``session.get_modelmeta().custom_metadata_map``)
    so the model file is parsed once and the runtime does not need the ``onnx`` package.
    """
    return ModelMetadata.from_json(props[METADATA_KEY]) if METADATA_KEY in props else None
