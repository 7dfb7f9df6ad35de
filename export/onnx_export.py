"""Checkpoint -> ONNX with a dynamic batch axis and the model metadata inside."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Optional

import onnx
import torch

from export.metadata import METADATA_KEY, ModelMetadata
from export.wrapper import EmbeddingGraph
from trainer.config import CLIP_MEAN, CLIP_STD
from trainer.models.checkpoint import LoadedCheckpoint, load_checkpoint

log = logging.getLogger(__name__)

MIN_OPSET, MAX_OPSET = 14, 20  # 14: Trilu/LayerNorm-friendly; 20: newest the exporter and TensorRT 10 share


class ExportError(RuntimeError):
    """An export that cannot be done as asked (bad checkpoint, opset, parity...)."""


def build_graph(loaded: LoadedCheckpoint) -> EmbeddingGraph:
    return EmbeddingGraph(loaded.model, CLIP_MEAN, CLIP_STD).eval()


def metadata_for(loaded: LoadedCheckpoint, graph: EmbeddingGraph, precision: str, source: str) -> ModelMetadata:
    h, w = loaded.model_config.image_size
    return ModelMetadata(
        input_height=h,
        input_width=w,
        embedding_dim=loaded.model.embedding_dim,
        num_parts=loaded.model.num_parts,
        outputs=graph.output_names,
        method=loaded.method,
        camera_input="camera" if graph.uses_camera else None,
        num_cameras=loaded.num_cameras if graph.uses_camera else 0,
        precision=precision,
        source=source,
    )


def example_inputs(meta: ModelMetadata, batch: int = 2) -> tuple[torch.Tensor, ...]:
    images = torch.randint(0, 256, (batch, meta.input_height, meta.input_width, 3), dtype=torch.uint8)
    if meta.camera_input:
        return images, torch.zeros(batch, dtype=torch.int64)
    return (images,)


@contextlib.contextmanager
def mha_fastpath(enabled: bool):
    """PyTorch's fused MultiheadAttention inference path (taken in eval mode when the head count
    is even, e.g. ViT-B/16's 12 heads) has no ONNX symbolic: export with the plain path."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int = 17) -> tuple[Path, ModelMetadata]:
    """Write ``out`` in FP32; FP16 is the TensorRT step's job (it builds from this file)."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported: choose {MIN_OPSET}..{MAX_OPSET} (17 recommended)")
    loaded = load_checkpoint(checkpoint)
    graph = build_graph(loaded)
    meta = metadata_for(loaded, graph, "fp32", str(checkpoint))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_inputs(meta)
    names = ["images"] + (["camera"] if meta.camera_input else [])
    axes = {name: {0: "batch"} for name in names + meta.outputs}
    with torch.no_grad(), mha_fastpath(False):
        graph(*inputs)  # methods cache their text-side constants (prototypes, anchors) on the first eval call
        torch.onnx.export(graph, inputs, str(out), input_names=names, output_names=meta.outputs, dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True)
    model = onnx.load(str(out))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    log.info("wrote %s (opset %d, %s, embedding %d)", out, opset, meta.precision, meta.embedding_dim)
    return out, meta
