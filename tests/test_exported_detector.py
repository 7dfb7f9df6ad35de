"""The torch-free detector: letterbox and decoding with known answers, and box-for-box agreement
with Ultralytics' own predictions on the same exported file (the demo detector exported to ONNX
here; the shared YOLOv8n OpenVINO INT8 model on real MOT17 frames where ../shared is present)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.runtime.exported_detector import ExportedDetector, ExportedDetectorError
from edge.runtime.yolo_decode import Letterbox, decode, letterbox, to_image, to_input

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"
OPENVINO_YOLO = REALDATA / "weights" / "yolov8n_int8_openvino_model"


def test_letterbox_keeps_the_aspect_centres_and_pads_grey():
    image = np.full((100, 200, 3), 7, np.uint8)
    fitted, box = letterbox(image, (64, 64))
    assert fitted.shape == (64, 64, 3)
    assert box == Letterbox(gain_x=0.32, gain_y=0.32, pad_x=0, pad_y=16, height=100, width=200)
    assert (fitted[:16] == 114).all() and (fitted[48:] == 114).all() and (fitted[16:48] == 7).all()


def test_boxes_go_back_to_the_original_image_and_are_clipped():
    box = Letterbox(gain_x=0.32, gain_y=0.32, pad_x=0, pad_y=16, height=100, width=200)
    xyxy = np.array([[32.0, 32.0, 64.0, 40.0], [-5.0, 0.0, 70.0, 70.0]], np.float32)
    np.testing.assert_allclose(to_image(xyxy, box), [[100, 50, 200, 75], [0, 0, 200, 100]])


def test_input_is_rgb_nchw_in_unit_range():
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    x, _ = to_input([image], (32, 32))
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    assert x[0, 2].min() == 1.0 and x[0, 0].max() == 0.0  # blue ends in the last (RGB) channel


def raw_output(rows: list[tuple[float, float, float, float, float, float]]) -> np.ndarray:
    """[4 + 2 classes, anchors] from (cx, cy, w, h, score person, score bag) rows."""
    return np.array(rows, np.float32).T


def test_decoding_keeps_the_best_of_overlapping_boxes_per_class_and_drops_other_classes():
    identity = Letterbox(1.0, 1.0, 0, 0, 100, 100)
    raw = raw_output(
        [
            (20, 20, 10, 20, 0.9, 0.0),  # a person
            (21, 20, 10, 20, 0.8, 0.0),  # the same person again: suppressed
            (60, 60, 10, 20, 0.1, 0.0),  # below the threshold
            (80, 50, 10, 10, 0.2, 0.95),  # a bag: best class is not a person
            (50, 50, 10, 20, 0.5, 0.0),  # another person
        ]
    )
    xyxy, score, cls = decode(raw, identity, conf=0.25, iou=0.7, classes=(0,))
    np.testing.assert_allclose(xyxy, [[15, 10, 25, 30], [45, 40, 55, 60]])
    np.testing.assert_allclose(score, [0.9, 0.5])
    assert cls.tolist() == [0, 0]
    _, _, every_class = decode(raw, identity, conf=0.25, iou=0.7, classes=None)
    assert sorted(every_class.tolist()) == [0, 0, 1]


def test_a_file_without_export_metadata_is_one_line(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["out"])],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])],
    )
    path = tmp_path / "bare.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(ExportedDetectorError, match=r"bare.onnx: no Ultralytics export metadata \(imgsz, names\)"):
        ExportedDetector(str(path), "onnx")


def assert_same_boxes(ours, reference) -> int:
    """Every box within 0.5 px and the same score (1e-4) as Ultralytics'; returns how many."""
    assert len(ours.xyxy) == len(reference.xyxy)
    for xyxy, conf in zip(reference.xyxy, reference.conf):
        nearest = np.abs(ours.xyxy - xyxy).max(1).argmin()
        assert np.abs(ours.xyxy[nearest] - xyxy).max() <= 0.5
        assert abs(ours.conf[nearest] - conf) <= 1e-4
    return len(reference.xyxy)


def ultralytics_boxes(weights: str, images: list[np.ndarray], imgsz: int):
    from edge.runtime.detector import PersonDetector

    return PersonDetector(weights, imgsz=imgsz, conf=0.25, iou=0.7, batch=False)(images)


@pytest.mark.slow
def test_the_demo_detector_exported_to_onnx_gives_ultralytics_boxes(tmp_path):
    """The committed demo detector through Ultralytics' ONNX export; the demo's own frames."""
    pytest.importorskip("onnx")
    from ultralytics import YOLO

    from sim.render import CameraRenderer
    from sim.scene import World, resolve_scene

    shutil.copy(REPO / "edge" / "demo_models" / "detector.pt", tmp_path / "detector.pt")
    onnx_path = YOLO(str(tmp_path / "detector.pt")).export(format="onnx", imgsz=320, batch=1, dynamic=False)
    world = World(resolve_scene("demo"))
    renderers = [CameraRenderer(world, i) for i in range(len(world.cameras))]
    images = [r.render(f)[0] for r in renderers for f in (40, 120, 200)]
    ours = ExportedDetector(str(onnx_path), "onnx")(images)
    reference = ultralytics_boxes(str(onnx_path), images, 320)
    assert sum(assert_same_boxes(o, r) for o, r in zip(ours, reference)) >= 10


@pytest.mark.realdata
@pytest.mark.skipif(not OPENVINO_YOLO.is_dir(), reason="needs ../shared/realdata")
def test_the_shared_openvino_yolo_gives_ultralytics_boxes_on_mot17_frames():
    pytest.importorskip("openvino")
    frames = sorted((REALDATA / "mot17_mini" / "train").glob("*/img1/*.jpg"))[::4]
    images = [cv2.imread(str(f)) for f in frames]
    ours = ExportedDetector(str(OPENVINO_YOLO), "openvino")(images)
    reference = ultralytics_boxes(str(OPENVINO_YOLO), images, 640)
    assert sum(assert_same_boxes(o, r) for o, r in zip(ours, reference)) >= 40


@pytest.mark.slow
def test_edge_run_with_the_exported_backend_writes_the_same_tracks_as_through_ultralytics(tmp_path):
    """``detector.backend: exported`` on the demo detector's ONNX: the same MOT rows, frame for
    frame, as Ultralytics running that very file (lockstep, two cameras)."""
    import subprocess
    import sys

    from conftest import demo_camera_file
    from test_site import free_port
    from ultralytics import YOLO

    pytest.importorskip("onnx")
    shutil.copy(REPO / "edge" / "demo_models" / "detector.pt", tmp_path / "detector.pt")
    onnx_path = YOLO(str(tmp_path / "detector.pt")).export(format="onnx", imgsz=320, batch=1, dynamic=False)
    outputs = {}
    for backend in ("ultralytics", "exported"):
        folder = tmp_path / backend
        folder.mkdir()
        cameras = (
            "{id: c1, source: 'synthetic://demo?camera=cam1&frames=120', realtime: false}, "
            "{id: c2, source: 'synthetic://demo?camera=cam2&frames=120', realtime: false}"
        )
        demo_camera_file(folder, cameras, rest=f"outputs: {{mot_dir: {folder / 'mot'}}}\n")
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "edge.run",
                "--cameras",
                str(folder / "cams.yaml"),
                f"detector.weights={onnx_path}",
                f"detector.backend={backend}",
                "detector.batch=false",
                f"publisher.endpoint=tcp://127.0.0.1:{free_port()}",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        outputs[backend] = {p.name: p.read_text() for p in sorted((folder / "mot").glob("*.txt"))}
    assert outputs["exported"] == outputs["ultralytics"]
    assert sum(len(text.splitlines()) for text in outputs["exported"].values()) > 20
