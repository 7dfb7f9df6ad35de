"""Measure an exported model's same-/different-person similarity on a labelled ReID set and store
it, with the matching threshold it gives, in the model's metadata.

Training does this for its own checkpoints (``train_meta.similarity``, written by ``export onnx``);
this is for a model exported before that, or measured on another set:

    python -m export similarity --onnx model.onnx --dataset market1501 --root data/world_reid_multi
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import onnx

from core.embeddings import Embeddings
from core.model_card import METADATA_KEY, ModelMetadata, SimilarityStatistics, read_onnx_metadata
from core.onnx_runner import ort_runner
from export.parity import feed, read_bgr
from trainer.eval.similarity_stats import gallery_swap_stats, similarity_stats

log = logging.getLogger(__name__)


def embed_files(
    onnx_path: Path, meta: ModelMetadata, files: list[Path], cameras: np.ndarray, batch: int = 64
) -> Embeddings:
    """Every image file through the ONNX model (uint8 RGB crops at the input size of its ``meta``)."""
    run = ort_runner(onnx_path, ["CPUExecutionProvider"])
    rows = []
    for start in range(0, len(files), batch):
        chunk = files[start : start + batch]
        images = np.stack([cv2.resize(read_bgr(f), (meta.input_width, meta.input_height))[..., ::-1] for f in chunk])
        outs = run(feed(meta, np.ascontiguousarray(images), cameras[start : start + batch] % max(1, meta.num_cameras)))
        rows.append(Embeddings(outs[0], outs[1], outs[2]) if meta.num_parts and len(outs) >= 3 else Embeddings(outs[0]))
    return Embeddings.concat(rows)


def store_similarity(
    onnx_path: str | Path, dataset: str, root: str | Path, false_match_rate: float = 0.01
) -> SimilarityStatistics:
    """Measure on the set's query + gallery and write ``similarity`` into the ONNX metadata."""
    from trainer.data.datasets import load_dataset

    onnx_path = Path(onnx_path)
    meta = read_onnx_metadata(onnx_path)
    if meta is None:
        raise ValueError(
            f"{onnx_path} has no clipreid-edge metadata: export it with `python -m export onnx` "
            "(for a third-party model, set matching.threshold in the cameras YAML)"
        )
    data = load_dataset(dataset, root)
    samples = [*data.query, *data.gallery]
    cams = np.array([s.camid for s in samples])
    emb = embed_files(onnx_path, meta, [Path(s.path) for s in samples], cams)
    pids = np.array([s.pid for s in samples])
    stats = similarity_stats(emb, pids, cams, false_match_rate)
    stats["split"] = f"{dataset} {Path(root).name} query+gallery, cross-camera pseudo-tracklet pairs"
    gallery = slice(len(data.query), None)
    swap = gallery_swap_stats(emb[gallery], pids[gallery], cams[gallery], [s.path for s in data.gallery])
    if swap is not None:
        stats["swap"] = swap
    meta.similarity = stats
    model = onnx.load(str(onnx_path))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = meta.to_json()
    onnx.save(model, str(onnx_path))
    log.info(
        "%s: threshold %.4f at false-match rate %.2f (same %.4f, different %.4f); swap_below %s",
        onnx_path,
        stats["threshold"],
        false_match_rate,
        stats["same_mean"],
        stats["diff_mean"],
        swap["swap_below"] if swap is not None else None,
    )
    return stats
