"""Checkpoint -> ONNX with a dynamic batch axis and the model metadata inside."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import onnx
import torch

from core.model_card import METADATA_KEY, ModelMetadata
from export.wrapper import EmbeddingGraph
from trainer.config import CLIP_MEAN, CLIP_STD
from trainer.models.checkpoint import LoadedCheckpoint, load_checkpoint

log = logging.getLogger(__name__)

MIN_OPSET, MAX_OPSET = 14, 20  # 14: Trilu/LayerNorm-friendly; 20: newest the exporter and TensorRT 10 share


class ExportError(RuntimeError):
    """An export that cannot be done as asked (bad checkpoint, opset, parity...)."""


def build_graph(loaded: LoadedCheckpoint) -> EmbeddingGraph:
    """The graph normalises pixels as training did (``train_meta`` mean/std; CLIP's for older checkpoints)."""
    mean = tuple(loaded.train_meta.get("mean", CLIP_MEAN))
    std = tuple(loaded.train_meta.get("std", CLIP_STD))
    return EmbeddingGraph(loaded.model, mean, std).eval()


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
        similarity=loaded.train_meta.get("similarity"),
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


# ONNX op types kept in FP32 in an FP16 export: the same precision-sensitive set the TensorRT
# build pins (LayerNorm statistics, softmax, reductions, the L2 norm).
FP32_OP_TYPES = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceL2", "Pow", "Sqrt", "Div")


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """FP16 weights and activations, FP32 inputs/outputs and precision-sensitive ops.

    Uses ONNX Runtime's converter (onnxconverter-common 1.16 fails on the graph's Cast nodes).
    """
    from onnxruntime.transformers import float16

    model = float16.convert_float_to_float16(
        model, keep_io_types=True, op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + list(FP32_OP_TYPES)
    )
    return sort_nodes(model)  # the converter appends its Cast nodes at the end


def sort_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Order the graph's nodes so every node comes after the producers of its inputs (ONNX rule)."""
    graph = model.graph
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        progressed = [n for n in pending if all(i in ready for i in n.input)]
        if not progressed:
            raise ExportError("the FP16 graph has a cycle or a missing input")
        for node in progressed:
            ordered.append(node)
            ready.update(node.output)
        done = {id(n) for n in progressed}
        pending = [n for n in pending if id(n) not in done]
    del graph.node[:]
    graph.node.extend(ordered)
    return model


def export_onnx(
    checkpoint: str | Path, out: str | Path, opset: int = 17, fp16: bool = False
) -> tuple[Path, ModelMetadata]:
    """Write ``out`` (FP32, or FP16 with the sensitive ops in FP32). TensorRT builds its own FP16
    engine from the FP32 file; the FP16 ONNX is for ONNX Runtime on a GPU and half the size."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported: choose {MIN_OPSET}..{MAX_OPSET} (17 recommended)")
    loaded = load_checkpoint(checkpoint)
    graph = build_graph(loaded)
    meta = metadata_for(loaded, graph, "fp16" if fp16 else "fp32", str(checkpoint))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_inputs(meta)
    names = ["images"] + (["camera"] if meta.camera_input else [])
    axes = {name: {0: "batch"} for name in names + meta.outputs}
    with torch.no_grad(), mha_fastpath(False):
        probe = graph(*inputs)  # methods cache their text-side constants (prototypes, anchors) on the first eval call
        if meta.num_parts:
            meta.part_dim = int(probe[1].shape[-1])
        torch.onnx.export(
            graph,
            inputs,
            str(out),
            input_names=names,
            output_names=meta.outputs,
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )
    model = onnx.load(str(out))
    if fp16:
        model = to_fp16(model)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    log.info("wrote %s (opset %d, %s, embedding %d)", out, opset, meta.precision, meta.embedding_dim)
    return out, meta
