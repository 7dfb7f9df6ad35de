"""The detector as a TensorRT engine without PyTorch: its card beside it, the backend chosen by the
file, the runtime path through the engine runner, and the exporter's parity check.

Without a GPU the engine runner is stood in for by ONNX Runtime over the same ONNX (what the engine
was built from), so the card, batching and decoding path is the one a Jetson runs; the engine
build itself runs in the GPU test at the end, which skips without TensorRT and a CUDA device.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import core.tensorrt_runner
from core.detector_card import DetectorCard, read_sidecar, sidecar_path, write_sidecar
from edge.runtime.config import DetectorConfig
from edge.runtime.exported_detector import ExportedDetector, ExportedDetectorError
from export.detector_engine import check_frames, compare_outputs, onnx_card
from sim.render import CameraRenderer
from sim.scene import World, resolve_scene

REPO = Path(__file__).resolve().parents[1]
DEMO_ONNX = REPO / "edge" / "demo_models" / "detector.onnx"


def demo_frames(n: int = 3) -> list[np.ndarray]:
    renderer = CameraRenderer(World(resolve_scene("demo")), 1)
    return [renderer.render(40 + 25 * i)[0] for i in range(n)]


class OnnxAsEngine:
    """The engine runner's interface over ONNX Runtime, with a profile's batch limit."""

    def __init__(self, path, max_batch: int = 2):
        from core.onnx_runner import ort_session

        self.session = ort_session(DEMO_ONNX, ["CPUExecutionProvider"])
        self.inputs = [self.session.get_inputs()[0].name]
        self.max_batch, self.batches = max_batch, []

    def __call__(self, inputs):
        x = inputs[self.inputs[0]]
        assert len(x) <= self.max_batch, "a batch outside the engine's profile"
        self.batches.append(len(x))
        return self.session.run(None, inputs)


def test_the_card_round_trips_beside_the_engine(tmp_path):
    card = replace(onnx_card(DEMO_ONNX), max_batch=8)
    assert card.imgsz == (320, 320) and card.names == {0: "person"} and card.batch == 0  # dynamic export
    engine = tmp_path / "detector.engine"
    assert read_sidecar(engine) is None
    write_sidecar(engine, card)
    assert sidecar_path(engine).name == "detector.engine.detector.json" and read_sidecar(engine) == card


def test_the_backend_follows_the_file(tmp_path):
    engine = tmp_path / "detector.engine"
    engine.write_bytes(b"engine")
    assert DetectorConfig(weights=str(DEMO_ONNX)).runs_on() == "exported"
    assert DetectorConfig(weights=str(REPO / "edge" / "demo_models" / "detector.pt")).runs_on() == "ultralytics"
    assert DetectorConfig(weights=str(engine)).runs_on() == "ultralytics"  # Ultralytics' engine: card inside
    write_sidecar(engine, DetectorCard((320, 320), {0: "person"}, 0, max_batch=8))
    assert DetectorConfig(weights=str(engine)).runs_on() == "exported"
    assert DetectorConfig(weights=str(engine), backend="ultralytics").runs_on() == "ultralytics"


def test_an_engine_runs_through_the_runner_in_profile_sized_batches_with_onnx_boxes(tmp_path, monkeypatch):
    engine = tmp_path / "detector.engine"
    engine.write_bytes(b"built on the device")
    write_sidecar(engine, replace(onnx_card(DEMO_ONNX), max_batch=2))
    runners: list[OnnxAsEngine] = []
    monkeypatch.setattr(core.tensorrt_runner, "EngineRunner", lambda p: runners.append(OnnxAsEngine(p)) or runners[-1])
    frames = demo_frames(3)
    through_engine = ExportedDetector(str(engine), "engine", conf=0.4)(frames)
    through_onnx = ExportedDetector(str(DEMO_ONNX), "onnx", conf=0.4)(frames)
    assert runners[0].batches == [2, 1]  # 3 frames, a profile of at most 2
    assert sum(len(d) for d in through_onnx) >= 3  # people were found
    for a, b in zip(through_engine, through_onnx):
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        np.testing.assert_allclose(a.conf, b.conf, atol=1e-5)


def test_an_engine_without_its_card_is_one_line(tmp_path):
    engine = tmp_path / "yolo.engine"
    engine.write_bytes(b"x")
    with pytest.raises(ExportedDetectorError, match=r"yolo.engine: no yolo.engine.detector.json beside it: build it"):
        ExportedDetector(str(engine), "engine")


def test_parity_passes_on_equal_outputs_and_names_the_worst_box_otherwise():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 1, (2, 5, 50)).astype(np.float32)
    ref[:, :4] *= 300
    assert compare_outputs(ref, ref.copy(), conf=0.5).passed
    moved = ref.copy()
    moved[1, 0, int(np.argmax(ref[1, 4]))] += 3.5  # the best candidate's x moved 3.5 px
    report = compare_outputs(ref, moved, conf=0.5, max_px=2.0)
    assert not report.passed and report.worst_box_px == pytest.approx(3.5, abs=1e-3)
    ignored = ref.copy()
    ignored[0, 0, int(np.argmin(ref[0, 4]))] += 50  # a candidate below conf does not count
    assert compare_outputs(ref, ignored, conf=0.5).passed
    assert not compare_outputs(ref, ref, conf=2.0).passed  # nothing compared is no pass


def test_check_frames_are_the_detector_s_input():
    x = check_frames((320, 320), 2)
    assert x.shape == (2, 3, 320, 320) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1


def has_cuda_tensorrt() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        import pycuda.autoinit  # noqa: F401

        return True
    except Exception:  # noqa: BLE001 - no driver, no device
        return False


@pytest.mark.skipif(not has_cuda_tensorrt(), reason="needs TensorRT and a CUDA GPU")
def test_the_demo_detector_as_an_fp16_engine_finds_the_onnx_boxes(tmp_path):
    from export.detector_engine import build_detector_engine
    from export.tensorrt_engine import BatchProfile

    onnx = tmp_path / "detector.onnx"
    shutil.copy(DEMO_ONNX, onnx)
    engine, report = build_detector_engine(onnx, tmp_path / "detector.engine", True, BatchProfile(1, 2, 4))
    assert report.passed, str(report)
    frames = demo_frames(3)
    for a, b in zip(
        ExportedDetector(str(engine), "engine", conf=0.4)(frames), ExportedDetector(str(onnx), "onnx", conf=0.4)(frames)
    ):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=2.0)


def test_batch_false_runs_one_frame_per_call(tmp_path, monkeypatch):
    engine = tmp_path / "detector.engine"
    engine.write_bytes(b"x")
    write_sidecar(engine, replace(onnx_card(DEMO_ONNX), max_batch=8))
    runners: list[OnnxAsEngine] = []
    monkeypatch.setattr(
        core.tensorrt_runner, "EngineRunner", lambda p: runners.append(OnnxAsEngine(p, 8)) or runners[-1]
    )
    ExportedDetector(str(engine), "engine", batch=False)(demo_frames(3))
    assert runners[0].batches == [1, 1, 1]
