"""Model metadata: what an edge backend needs to feed a ReID model and read its outputs.

Written by export into the ONNX ``metadata_props`` (key ``clipreid_edge``, one JSON string) and
into the TensorRT engine's sidecar ``<engine>.json``; read by every edge backend instead of
guessing. Third-party models without it get the same fields from configuration.

The card's ``similarity`` statistics (measured by training or ``python -m export similarity``,
read by the identity settings and the track-swap cut) are typed here as :class:`TypedDict` s, so
the JSON on disk stays a plain nested object while the type checker knows every key its writers
(``trainer.eval.similarity_stats``) and readers spell.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, TypedDict

METADATA_KEY = "clipreid_edge"
METADATA_VERSION = 1


class PairStatistics(TypedDict):
    """Cosines of cross-camera pseudo-tracklet pairs and the threshold that only the false-match
    rate of different-person pairs reaches (``trainer.eval.similarity_stats``)."""

    same_mean: float
    same_std: float
    diff_mean: float
    diff_std: float  # the identity engine's unit of evidence
    threshold: float
    true_match_rate: float  # share of same-person pairs the threshold accepts
    pairs_same: int
    pairs_diff: int


class _SwapRequired(TypedDict):
    swap_below: float  # the cosine under which a crop no longer looks like its own track
    false_cut: float
    crops: int
    same_p1: float
    same_p50: float
    other_p50: Optional[float]
    other_below: Optional[float]  # share of another person's crops the cut catches


class SwapStatistics(_SwapRequired, total=False):
    """How unlike its own track a crop of the same person can look (``similarity.swap``)."""

    split: str


class _SimilarityRequired(PairStatistics):
    false_match_rate: float
    crops_per_tracklet: int
    split: str  # what was measured: "val", "test" or the set ``export similarity`` read


class SimilarityStatistics(_SimilarityRequired, total=False):
    """The card's ``similarity``: raw-cosine pair statistics at the top level; the keys below came
    later, so older exports may lack them."""

    centered: PairStatistics  # the same after camera centering (the edge's centered matching)
    mean: list[float]  # the split's mean pseudo-tracklet: the prior of a camera's look
    part_mean: list[list[float]]  # the same per part (part-based methods)
    swap: SwapStatistics


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
    # threshold they give (None: third-party model, or none measured)
    similarity: Optional[SimilarityStatistics] = None
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
