import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO

from core.model_card import read_onnx_metadata
from core.onnx_runner import ort_runner
from edge.reid.onnxruntime_backend import OnnxRuntimeBackend
from export.onnx_export import ExportError, build_graph, export_onnx
from export.parity import FP16_MIN_COSINE, FP32_MIN_COSINE, check_backend, person_crops, torch_reference
from export.tensorrt_engine import BatchProfile
from trainer.config import ModelConfig
from trainer.models import build_model, load_checkpoint, save_checkpoint

METHOD_OPTIONS = {"saga": {"layer": 3}, "agreid": {"encoder_width": 32, "encoder_layers": 1}}


def make_checkpoint(tmp_path, arch="tiny-vit", sie=False, method="baseline"):
    torch.manual_seed(0)
    cfg = ModelConfig(
        backbone={"name": arch},
        image_size=(64, 32),
        sie={"enabled": sie},
        method={"name": method, method: METHOD_OPTIONS.get(method, {})} if method != "baseline" else {},
    )
    model = build_model(cfg, num_classes=5, num_cameras=3)
    with (
        torch.no_grad()
    ):  # zero-initialised method layers (MSCSA's restoring convs) would hide the method from the check
        for p in model.method.parameters():
            if not p.any():
                p.normal_(0, 0.05)
    return save_checkpoint(tmp_path / "m.pt", model.eval(), cfg, num_cameras=3)


@pytest.fixture(
    params=[
        ("tiny-vit", False),
        ("tiny-vit", True),
        ("tiny-rn", False),
        ("tiny-vit", False, "agreid"),
        ("tiny-vit", True, "rganet"),
        ("tiny-vit", False, "saga"),
        ("tiny-rn", False, "mscsa_tgi"),
    ],
    ids=["vit", "vit-sie", "rn", "agreid", "rganet-sie", "saga", "mscsa_tgi"],
)
def checkpoint(request, tmp_path):
    return make_checkpoint(tmp_path, *request.param)


def onnx_parameter_count(path) -> int:
    import onnx

    return sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)


def test_onnx_parity_dynamic_batch_and_metadata(checkpoint, tmp_path):
    out, meta = export_onnx(checkpoint, tmp_path / "m.onnx")
    stored = read_onnx_metadata(out)
    assert stored == meta and stored.layout == "NHWC" and stored.dtype == "uint8"
    loaded = load_checkpoint(checkpoint)
    assert stored.embedding_dim == loaded.model.embedding_dim and (stored.input_height, stored.input_width) == (64, 32)
    assert (stored.camera_input == "camera") == loaded.model_config.sie.enabled
    images = person_crops(12, 64, 32, seed=1)
    cameras = np.arange(12) % 3 if stored.camera_input else None
    reference = torch_reference(build_graph(loaded), images, cameras)
    assert np.allclose(np.linalg.norm(reference[0], axis=1), 1, atol=1e-5)
    assert stored.outputs == ["embedding"] + (["part_features", "part_confidence"] if loaded.model.num_parts else [])
    assert len(reference) == len(stored.outputs) and reference[0].shape == (12, stored.embedding_dim)
    if loaded.model.num_parts:
        assert reference[1].shape[:2] == reference[2].shape == (12, stored.num_parts)
        assert ((reference[2] >= 0) & (reference[2] <= 1)).all()
    text_side = sum(p.numel() for p in loaded.model.text_encoder.parameters())
    assert (
        onnx_parameter_count(out) < sum(p.numel() for p in loaded.model.parameters()) - text_side
    )  # no text encoder inside
    for batch in (1, 5, 12):  # dynamic batch axis
        report = check_backend(
            ort_runner(out, ["CPUExecutionProvider"]),
            reference,
            stored,
            images,
            cameras,
            "ort",
            FP32_MIN_COSINE,
            batch=batch,
        )
        assert report.passed, report


def test_agreid_exports_the_baselines_graph(tmp_path):
    """The attribute encoder is training-only: AG-ReID's deployed model costs what the baseline's does."""
    base, _ = export_onnx(make_checkpoint(tmp_path / "b"), tmp_path / "b.onnx")
    ag, _ = export_onnx(make_checkpoint(tmp_path / "a", method="agreid"), tmp_path / "a.onnx")
    assert onnx_parameter_count(ag) == onnx_parameter_count(base)


def test_graph_normalises_like_the_training_transform(tmp_path):
    from PIL import Image

    from trainer.config import CLIP_MEAN, CLIP_STD
    from trainer.data.transforms import test_transform

    cfg = ModelConfig(backbone={"name": "tiny-vit"}, image_size=(64, 32))
    ckpt = save_checkpoint(tmp_path / "m.pt", build_model(cfg, 3, 1).eval(), cfg, 1)
    graph = build_graph(load_checkpoint(ckpt))
    crop = person_crops(1, 64, 32)
    ours = graph.preprocess(torch.from_numpy(crop))[0]
    ref = test_transform((64, 32), CLIP_MEAN, CLIP_STD)(Image.fromarray(crop[0]))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_bad_inputs_give_clear_errors(tmp_path):
    checkpoint = make_checkpoint(tmp_path)
    with pytest.raises(ExportError, match="opset 9 is not supported"):
        export_onnx(checkpoint, tmp_path / "x.onnx", opset=9)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    from trainer.models import CheckpointError

    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        export_onnx(tmp_path / "junk.pt", tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="MIN:OPT:MAX"):
        BatchProfile.parse("32")
    with pytest.raises(ValueError, match="MIN <= OPT <= MAX"):
        BatchProfile.parse("8:4:16")


@pytest.mark.parametrize("method", ["baseline", "rganet"])
def test_fp16_onnx_keeps_parity_and_halves_the_file(tmp_path, method):
    import onnx

    checkpoint = make_checkpoint(tmp_path, "tiny-vit-4h", method=method)
    fp32, _ = export_onnx(checkpoint, tmp_path / "m32.onnx")
    fp16, meta = export_onnx(checkpoint, tmp_path / "m16.onnx", fp16=True)
    assert meta.precision == "fp16" and read_onnx_metadata(fp16).precision == "fp16"
    weights = {t.data_type for t in onnx.load(str(fp16)).graph.initializer if len(t.dims) >= 2}
    assert onnx.TensorProto.FLOAT16 in weights
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size
    images = person_crops(8, 64, 32, seed=3)
    reference = torch_reference(build_graph(load_checkpoint(checkpoint)), images, None)
    report = check_backend(
        ort_runner(fp16, ["CPUExecutionProvider"]), reference, meta, images, None, "ort fp16", FP16_MIN_COSINE
    )
    assert report.passed, report
    # the edge backend reads it too (FP16 sessions run without ORT's graph optimiser)
    assert OnnxRuntimeBackend(str(fp16)).embed(images).global_.dtype == np.float32


@pytest.mark.trt
def test_tensorrt_fp16_engine_parity(checkpoint, tmp_path):
    from core.model_card import read_onnx_metadata
    from core.tensorrt_runner import EngineRunner
    from export.parity import FP16_MIN_COSINE, feed
    from export.tensorrt_engine import build_engine

    onnx_path, meta = export_onnx(checkpoint, tmp_path / "m.onnx")
    engine = build_engine(
        onnx_path, tmp_path / "m.engine", read_onnx_metadata(onnx_path), fp16=True, batch=BatchProfile(1, 8, 16)
    )
    images = person_crops(16, 64, 32)
    cameras = np.arange(16) % 3 if meta.camera_input else None
    reference = ort_runner(onnx_path, ["CPUExecutionProvider"])(feed(meta, images, cameras))
    import importlib.util

    for buffers in ["torch"] + (["pycuda"] if importlib.util.find_spec("pycuda") else []):
        runner = EngineRunner(engine, buffers=buffers)
        report = check_backend(runner, reference, meta, images, cameras, f"trt ({buffers} buffers)", FP16_MIN_COSINE)
        assert report.passed, report
        with pytest.raises(ValueError, match="outside the engine's profile"):
            runner(feed(meta, person_crops(17, 64, 32), None if cameras is None else np.zeros(17)))


def test_engine_runner_buffer_choice():
    from core.tensorrt_runner import _pick_buffers

    assert _pick_buffers("torch") == "torch"
    assert _pick_buffers("auto") in ("pycuda", "torch")
    with pytest.raises(ValueError, match="auto, pycuda or torch"):
        _pick_buffers("numpy")


def test_even_head_count_exports_despite_the_fused_attention_fast_path(tmp_path):
    """4 heads (like ViT-B/16's 12) make eval-mode MultiheadAttention take a fused op with no ONNX
    symbolic; export must still work and match PyTorch."""
    ckpt = make_checkpoint(tmp_path, "tiny-vit-4h")
    out, meta = export_onnx(ckpt, tmp_path / "m.onnx")
    images = person_crops(4, 64, 32, seed=2)
    reference = torch_reference(build_graph(load_checkpoint(ckpt)), images, None)
    assert check_backend(
        ort_runner(out, ["CPUExecutionProvider"]), reference, meta, images, None, "ort", FP32_MIN_COSINE
    ).passed


def test_similarity_is_measured_on_a_reid_set_and_stored_in_the_onnx(tmp_path):
    from sim.people import SyntheticSpec, write_synthetic_dataset

    data = write_synthetic_dataset(
        tmp_path / "data",
        SyntheticSpec(
            num_train_ids=4, num_test_ids=6, num_cameras=2, images_per_id_per_camera=6, height=64, width=32, seed=3
        ),
        progress=False,
    )

    def measure(onnx_path):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "export",
                "similarity",
                "--onnx",
                str(onnx_path),
                "--dataset",
                "synthetic",
                "--root",
                str(data),
                "--false-match-rate",
                "0.05",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )

    ckpt = make_checkpoint(tmp_path)
    untrained, meta = export_onnx(ckpt, tmp_path / "m.onnx")
    assert meta.similarity is None  # an untrained checkpoint without training statistics
    proc = measure(untrained)  # random weights do not separate same from different people: refused in one line
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(errors) == 1
    assert "do not separate" in errors[0] and "no matching threshold stored" in errors[0]
    assert read_onnx_metadata(untrained).similarity is None
    onnx_path = tmp_path / "trained.onnx"  # the shipped demo model (trained) separates them
    onnx_path.write_bytes((REPO / "edge" / "demo_models" / "reid.onnx").read_bytes())
    proc = measure(onnx_path)
    assert proc.returncode == 0, proc.stderr
    stats = read_onnx_metadata(onnx_path).similarity
    assert stats["false_match_rate"] == 0.05 and stats["pairs_same"] > 0 and -1.0 <= stats["threshold"] <= 1.0
    swap = stats["swap"]  # and the cosine that cuts a swapped track, from the gallery's tracks
    assert swap["crops"] > 0 and swap["same_p1"] <= swap["same_p50"] and swap["swap_below"] <= swap["same_p1"]
    assert OnnxRuntimeBackend(str(onnx_path)).meta.similarity == stats  # what the edge reads


def test_similarity_refuses_a_model_without_metadata(tmp_path, tiny_dataset):
    import onnx

    model = onnx.load(str(export_onnx(make_checkpoint(tmp_path), tmp_path / "m.onnx")[0]))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "export",
            "similarity",
            "--onnx",
            str(tmp_path / "bare.onnx"),
            "--dataset",
            "synthetic",
            "--root",
            str(tiny_dataset),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "bare.onnx has no clipreid-edge metadata" in proc.stderr and "set matching.threshold" in proc.stderr


def test_graph_normalises_with_the_mean_and_std_training_used(tmp_path):
    """An RN50 recipe trains with ImageNet mean/std; the checkpoint records it and export follows."""
    from PIL import Image

    from trainer.data.transforms import test_transform

    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    cfg = ModelConfig(backbone={"name": "tiny-rn"}, image_size=(64, 32))
    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        build_model(cfg, 3, 1).eval(),
        cfg,
        1,
        train_meta={"mean": list(imagenet[0]), "std": list(imagenet[1])},
    )
    graph = build_graph(load_checkpoint(ckpt))
    crop = person_crops(1, 64, 32)
    ref = test_transform((64, 32), *imagenet)(Image.fromarray(crop[0]))
    torch.testing.assert_close(graph.preprocess(torch.from_numpy(crop))[0], ref, atol=1e-5, rtol=1e-5)


def _with_metadata(src, dst, **changes):
    """A copy of an exported ONNX whose metadata says something else than the graph does."""
    import json

    import onnx

    from core.model_card import METADATA_KEY

    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = json.dumps({**json.loads(prop.value), **changes})
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"embedding_dim": 999}, "embedding_dim: the metadata says 999, the model returns 320"),
        ({"num_parts": 4}, "num_parts: the metadata says 4 parts, the model returns no part outputs"),
        (
            {"outputs": ["embedding", "part_features", "part_confidence"]},
            "outputs: the metadata names ['embedding', 'part_features', 'part_confidence'], the model has "
            "['embedding']",
        ),
    ],
    ids=["embedding_dim", "num_parts", "outputs"],
)
def test_a_model_that_breaks_its_metadata_contract_is_refused_at_load(tmp_path, changes, message):
    from edge.reid.base import ReIDBackendError
    from edge.reid.factory import build_backend
    from edge.runtime.config import ReIDConfig

    onnx_path, meta = export_onnx(make_checkpoint(tmp_path), tmp_path / "m.onnx")
    assert meta.embedding_dim == 320
    bad = _with_metadata(onnx_path, tmp_path / "bad.onnx", **changes)
    with pytest.raises(ReIDBackendError) as err:
        build_backend(ReIDConfig(model=str(bad)))
    assert str(err.value) == f"{bad}: {message}"
    assert build_backend(ReIDConfig(model=str(onnx_path))).meta.embedding_dim == 320  # the honest one loads


def test_part_based_export_states_its_part_width_and_keeps_it(tmp_path):
    from edge.reid.factory import build_backend
    from edge.runtime.config import ReIDConfig

    onnx_path, meta = export_onnx(make_checkpoint(tmp_path, "tiny-vit", True, "rganet"), tmp_path / "m.onnx")
    assert meta.num_parts == 4 and meta.part_dim == meta.embedding_dim - 128
    backend = build_backend(ReIDConfig(model=str(onnx_path)))
    assert backend.embed(person_crops(3, 64, 32), np.zeros(3, np.int64)).parts.shape == (3, 4, meta.part_dim)
