"""The edge runtime on real footage from ../shared/realdata (skipped when it is absent):
the two-camera video pair and MOT17 frames as an image-folder source, with the real YOLOv8n
detector and the third-party OSNet ONNX ReID model."""

import cv2
import numpy as np
import pytest
import yaml
from conftest import REALDATA

from edge.evaluate import evaluate
from edge.runtime.capture_loop import run_pipeline
from edge.runtime.config import load_edge_config

pytestmark = pytest.mark.realdata


def real_config(tmp_path, cameras, port, tracker: str = "bytetrack"):
    pytest.importorskip("openvino", reason="the shared YOLOv8n is an OpenVINO export")
    cfg = {
        "cameras": cameras,
        "tracker": {"kind": tracker},
        "detector": {
            "weights": str(REALDATA / "weights" / "yolov8n_int8_openvino_model"),
            "imgsz": 640,
            "conf": 0.25,
            "batch": False,
        },
        "reid": {
            "backend": "onnxruntime",
            "model": str(REALDATA / "weights" / "osnet_x0_25_msmt17.onnx"),
            "normalization": {"scale": 255.0},
            "embed_every": 5,
        },
        "matching": {"threshold": 0.6},  # a third-party model: no stored threshold
        "publisher": {"endpoint": f"tcp://127.0.0.1:{port}"},
        "outputs": {"mot_dir": str(tmp_path / "mot")},
    }
    path = tmp_path / "cams.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_edge_config(path)


def test_two_camera_video_pair_with_yolov8n_and_third_party_osnet(tmp_path):
    video = REALDATA / "samihormi_mc"
    cams = [
        {"id": "double", "source": str(video / "Double1.mp4"), "realtime": False},
        {"id": "single", "source": str(video / "Single1.mp4"), "realtime": False},
    ]
    cfg = real_config(tmp_path, cams, 56795)
    cfg.run.max_frames = 40
    report = run_pipeline(cfg)
    assert report["processed"] == {"double": 40, "single": 40} and not report["errors"]
    assert report["embedded"] > 0 and report["gallery"] >= 1
    for cam in ("double", "single"):
        rows = np.loadtxt(tmp_path / "mot" / f"{cam}.txt", delimiter=",", ndmin=2)
        assert len(rows) >= 20  # people are found and tracked in most frames
        assert rows[:, 4].min() > 10 and rows[:, 5].min() > 10  # plausible person-sized boxes


def test_annotated_video_of_the_real_pair_plays_back_per_camera(tmp_path):
    from test_edge_outputs import frames_in

    video = REALDATA / "samihormi_mc"
    cams = [
        {"id": "double", "source": str(video / "Double1.mp4"), "realtime": False},
        {"id": "single", "source": str(video / "Single1.mp4"), "realtime": False},
    ]
    cfg = real_config(tmp_path, cams, 56843)
    cfg.outputs.video_dir = str(tmp_path / "video")
    cfg.run.max_frames = 30
    report = run_pipeline(cfg)
    assert report["processed"] == {"double": 30, "single": 30} and report["output_errors"] == {}
    for cam in ("double", "single"):
        source, written = (
            cv2.VideoCapture(str(p)) for p in (video / f"{cam.capitalize()}1.mp4", tmp_path / "video" / f"{cam}.mp4")
        )
        size = (int(source.get(cv2.CAP_PROP_FRAME_WIDTH)), int(source.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(
            source.get(cv2.CAP_PROP_FPS), rel=0.01
        )  # plays at the source's speed
        source.release(), written.release()
        assert frames_in(tmp_path / "video" / f"{cam}.mp4") == (30, size)


def test_mot17_frames_as_an_image_folder_source_score_against_their_ground_truth(tmp_path):
    seq = REALDATA / "mot17_mini" / "train" / "MOT17-05-FRCNN"
    cfg = real_config(tmp_path, [{"id": seq.name, "source": str(seq), "realtime": False}], 56796)
    report = run_pipeline(cfg)
    n_images = len(list((seq / "img1").glob("*.jpg")))
    assert report["processed"] == {seq.name: n_images}
    result = evaluate(seq.parent, tmp_path / "mot", sequences=[seq.name])["sequences"][seq.name]
    assert result["DetA"] > 20 and result["HOTA"] > 20  # a real detector on real people, not noise


@pytest.mark.parametrize("tracker", ["bytetrack", "ultralytics-bytetrack"])
def test_real_pair_the_man_keeps_his_identity_through_a_tracker_break(tmp_path, tracker):
    """Single1 shows only the man; Ultralytics' ByteTrack breaks his track at about frame 78
    (Roboflow's keeps it whole). Every substantial Single1 tracklet must carry one global id; in
    Double1 that id is on one person's tracklets (his), and Double1's other person (the woman) is
    never given it."""
    video = REALDATA / "samihormi_mc"
    cams = [
        {"id": "double", "source": str(video / "Double1.mp4"), "realtime": False},
        {"id": "single", "source": str(video / "Single1.mp4"), "realtime": False},
    ]
    cfg = real_config(tmp_path, cams, 56797, tracker)
    run_pipeline(cfg)

    def global_ids_of_long_tracklets(cam):
        """local id -> set of global ids its rows were written with (rows joined on frame and box; a
        hand-over frame's second box of one id is not written)."""
        local = np.loadtxt(tmp_path / "mot" / f"{cam}.txt", delimiter=",", ndmin=2)
        glob = np.loadtxt(tmp_path / "mot" / f"{cam}.global.txt", delimiter=",", ndmin=2)
        by_row = {(int(r[0]), *np.round(r[2:6], 1)): int(r[1]) for r in glob}
        out = {}
        for lid in np.unique(local[:, 1]).astype(int):
            rows = local[local[:, 1] == lid]
            if len(rows) >= 20:
                out[lid] = {by_row[k] for r in rows if (k := (int(r[0]), *np.round(r[2:6], 1))) in by_row}
        return out

    single = global_ids_of_long_tracklets("single")
    if tracker == "ultralytics-bytetrack":
        assert len(single) >= 2  # the tracker break this test is about did happen
    his = set().union(*single.values())
    assert len(his) == 1, f"the man got several global ids in Single1: {single}"
    man = his.pop()
    double = global_ids_of_long_tracklets("double")
    assert len(double) >= 2  # the man and the woman
    assert any(ids == {man} for ids in double.values()), f"no Double1 tracklet is the man's ({man}): {double}"
    assert all(ids == {man} or man not in ids for ids in double.values()), (
        f"a tracklet changed to the man's id: {double}"
    )
    assert any(man not in ids for ids in double.values()), f"the woman was given the man's id: {double}"
