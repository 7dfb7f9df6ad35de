"""Edge building blocks: config validation, tracklet budget and lifecycle, identity matching,
per-camera tracker ids, ReID backends (ours and third-party ONNX), the event publisher."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zmq

from core.configio import ConfigError
from edge.identity import EngineSettings, IdentityEngine
from edge.listen import decode
from edge.reid.base import cut_crops
from edge.reid.onnxruntime_backend import OnnxRuntimeBackend
from edge.reid.torch_backend import TorchBackend
from edge.runtime.config import TrackerConfig, load_edge_config
from edge.runtime.tracking import CameraTracker
from edge.runtime.tracklets import BudgetPolicy, Tracklet, TrackletBook, overlap_fraction
from edge.runtime.types import Detections, Frame, Track
from edge.wire.publisher import SCHEMA, EventPublisher


def write_cfg(tmp_path, body: str):
    (tmp_path / "det.pt").write_bytes(b"x")
    path = tmp_path / "cams.yaml"
    path.write_text(body)
    return path


GOOD = """
cameras:
  - {id: a, source: "synthetic://tiny?camera=cam1"}
detector: {weights: det.pt}
"""


def test_config_resolves_paths_relative_to_the_file(tmp_path):
    cfg = load_edge_config(write_cfg(tmp_path, GOOD))
    assert cfg.detector.weights == str(tmp_path / "det.pt") and cfg.tracker.kind == "bytetrack"


@pytest.mark.parametrize(
    "body, message",
    [
        (GOOD + "tracker: {kind: sort}\n", "tracker.kind"),
        (GOOD + "reid: {model: det.pt, batch_sise: 4}\n", "reid.batch_sise: unknown key"),
        (GOOD.replace("det.pt", "missing.pt"), "detector.weights: file not found"),
        (
            GOOD.replace("detector:", "  - {id: a, source: 'synthetic://tiny?camera=cam2'}\ndetector:"),
            "camera ids must be unique",
        ),
        (GOOD + "tracker: {kind: bytetrack, reid_features: true}\n", "reid_features needs kind: botsort"),
        (
            GOOD + "tracker: {kind: bytetrack, overrides: {track_high_thresh: 0.6}}\n",
            "config and overrides are Ultralytics tracker yaml: use kind: ultralytics-bytetrack or botsort",
        ),
        (
            GOOD + "tracker: {kind: botsort, overrides: {track_buffer: 20}}\n",
            "overrides.track_buffer counts frames: set lost_s (seconds of media time) instead",
        ),
        (
            GOOD + "tracker: {kind: botsort, overrides: {track_high_thresh: 0.5, gmc_method: sparseOptFlow}}\n",
            "overrides ['track_high_thresh']: set high_score instead (the same for every tracker kind)",
        ),
        (GOOD + "matching: {transitions: [{from: a, to: zz, max_s: 5}]}\n", "unknown camera 'zz'"),
        (
            GOOD + "matching: {transitions: [{from: a, to: b, max_s: 5, exit: [[0, 0], [9, 0]]}]}\n",
            "matching.transitions.0.exit: Value error, a door is a polygon of at least 3 image points, got 2",
        ),
        (
            GOOD + "matching: {transitions: [{from: a, to: b, max_s: 5, entry: [[0, 0], [5, 5], [9, 9]]}]}\n",
            "matching.transitions.0.entry: Value error, the door polygon encloses no area",
        ),
        (
            GOOD.replace('"synthetic://tiny?camera=cam1"', "no/such/video.mp4"),
            "cameras.0.source: video file or image folder not found",
        ),
        (GOOD + "reid: {model: det.pt, embed_every: 0}\n", "reid.embed_every"),
        ("cameras: [\n", "not valid YAML"),
        (
            GOOD + "calibration: {zz: {homography: [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}}\n",
            "calibration.zz: unknown camera 'zz'",
        ),
        (
            GOOD + "calibration: {a: {homography: [[1, 2, 3], [2, 4, 6], [0, 0, 1]]}}\n",
            "calibration.a.homography: homography is not invertible",
        ),
        (
            GOOD + "calibration: {a: {image_points: [[0, 0], [1, 1], [2, 2], [3, 3]], "
            "floor_points: [[0, 0], [1, 0], [0, 1], [1, 1]]}}\n",
            "calibration.a.image_points: image_points are collinear",
        ),
        (
            GOOD
            + "calibration: {a: {image_points: [[0, 0], [9, 0], [0, 9]], floor_points: [[0, 0], [1, 0], [0, 1]]}}\n",
            "calibration.a.image_points: a homography needs at least 4 image/floor point pairs, got 3",
        ),
        (
            GOOD + "calibration: {a: {image_points: [[0, 0], [9, 0], [0, 9], [9, 9]]}}\n",
            "image_points and floor_points come together",
        ),
    ],
)
def test_bad_configs_name_the_file_and_field(tmp_path, body, message):
    with pytest.raises(ConfigError) as err:
        load_edge_config(write_cfg(tmp_path, body))
    assert message in str(err.value) and "cams.yaml" in str(err.value)


def test_overlap_fraction_is_share_of_own_area():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], np.float32)
    assert np.allclose(overlap_fraction(boxes), [0.5, 0.5, 0.0])


def frame(i, cam="a"):
    return Frame(cam, i, float(i), np.zeros((10, 10, 3), np.uint8))


def test_embedding_budget_new_then_every_n_seconds_or_better_crop():
    book = TrackletBook(
        "a", lost_s=2.0, policy=BudgetPolicy(embed_every_s=5, better_crop=1.5, min_box_height=10, max_overlap=0.6)
    )
    small = Track("a", 1, np.array([0, 0, 20, 40], np.float32), 0.5)
    asked = []
    for i in range(1, 12):
        events, reqs = book.update([small], frame(i))
        for r in reqs:
            r.tracklet.add_embedding(np.ones(4) / 2, r.quality)
        asked.append(bool(reqs))
    assert asked == [True, False, False, False, False, True, False, False, False, False, True]
    big = Track("a", 1, np.array([0, 0, 60, 120], np.float32), 0.9)  # much better crop: embed now
    _, reqs = book.update([big], frame(12))
    assert len(reqs) == 1
    reqs[0].tracklet.add_embedding(np.ones(4) / 2, reqs[0].quality)
    tiny = Track("a", 2, np.array([0, 0, 4, 8], np.float32), 0.9)  # too small: never
    _, reqs = book.update([big, tiny], frame(13))
    assert [r.tracklet.local_id for r in reqs] == []


def test_the_embedding_budget_is_media_time_so_sparse_frames_embed_as_often():
    """At a third of the frames a track still gets a crop every second, not every 10 of its frames."""
    book = TrackletBook(
        "a", lost_s=2.0, policy=BudgetPolicy(embed_every_s=1.0, better_crop=1.25, min_box_height=10, max_overlap=0.6)
    )
    track = Track("a", 1, np.array([0, 0, 20, 40], np.float32), 0.5)
    embedded_at = []
    for i in range(0, 30, 3):  # a 10 fps camera of which every 3rd frame is processed: 0.3 s apart
        t = i / 10
        _, reqs = book.update([track], Frame("a", i + 1, t, np.zeros((10, 10, 3), np.uint8)))
        for r in reqs:
            r.tracklet.add_embedding(np.ones(4) / 2, r.quality)
            embedded_at.append(round(t, 1))
    assert embedded_at == [0.0, 1.2, 2.4]


def test_tracklet_lifecycle_active_lost_found_ended():
    book = TrackletBook("a", lost_s=2.0)
    t = Track("a", 7, np.array([0, 0, 10, 20], np.float32), 0.9)
    kinds = []
    for i, tracks in enumerate([[t], [], [t], [], [], [], []], start=1):
        events, _ = book.update(tracks, frame(i))
        kinds += [e for e, _ in events]
    assert kinds == ["new", "lost", "found", "lost", "ended"]
    assert not book.tracklets


def test_quality_weighted_mean_embedding():
    t = Tracklet("a", 1, 0, 0, 0, 0, np.zeros(4), 1.0)
    t.add_embedding(np.array([1.0, 0, 0, 0]), 3.0)
    t.add_embedding(np.array([0, 1.0, 0, 0]), 1.0)
    expected = np.array([3.0, 1.0, 0, 0]) / np.linalg.norm([3.0, 1.0])
    assert np.allclose(t.embedding, expected) and t.n_embeddings == 2


def test_a_swapped_track_is_seen_in_two_unlike_crops_in_a_row_and_kept_out_of_the_mean():
    t = Tracklet("a", 1, 0, 0, 0, 0, np.zeros(4), 1.0)
    me, other = np.array([1.0, 0, 0, 0]), np.array([0.6, 0.8, 0, 0])  # cosine 0.6 to me
    assert not t.looks_swapped(other, 0.9)  # no mean yet
    t.add_embedding(me, 1.0), t.add_embedding(me, 1.0)
    assert not t.looks_swapped(me, 0.9)
    assert not t.looks_swapped(other, 0.9)  # one odd crop: occlusion, blur
    assert not t.looks_swapped(me, 0.9)  # and back: no swap, the count starts over
    assert not t.looks_swapped(other, 0.9) and t.looks_swapped(other, 0.9)


def test_a_crop_that_looks_like_someone_else_stays_out_of_the_mean_and_two_cut_the_track():
    t = Tracklet("a", 1, 0, 0, 0, 0, np.zeros(4), 1.0)
    me, other = np.array([1.0, 0, 0, 0]), np.array([0.6, 0.8, 0, 0])
    assert not t.offer(me, 1.0, swap_below=0.9) and not t.offer(me, 1.0, swap_below=0.9)
    assert not t.offer(other, 1.0, swap_below=0.9)  # held out: occlusion, or the start of a swap
    assert t.n_embeddings == 2 and np.allclose(t.embedding, me)
    assert t.offer(other, 1.0, swap_below=0.9) and t.n_embeddings == 2  # the second in a row: a swap
    assert not t.offer(other, 1.0) and t.n_embeddings == 3  # without swap_below every crop counts


def test_split_gives_the_tracker_s_track_a_new_local_id_from_the_next_frame_on():
    dets = Detections(np.array([[10, 10, 50, 100], [200, 10, 240, 100]], np.float32), np.array([0.9, 0.8], np.float32))
    tracker = CameraTracker("a", TrackerConfig())
    for _ in range(3):
        before = {tuple(t.xyxy.round()): t.local_id for t in tracker.update(dets)}
    assert sorted(before.values()) == [1, 2]
    assert tracker.split(before[(10.0, 10.0, 50.0, 100.0)]) == 3
    after = {tuple(t.xyxy.round()): t.local_id for t in tracker.update(dets)}
    assert after == {(10.0, 10.0, 50.0, 100.0): 3, (200.0, 10.0, 240.0, 100.0): 2}


@pytest.mark.parametrize("kind", ["bytetrack", "ultralytics-bytetrack"])
def test_each_camera_allocates_its_own_track_ids(kind):
    dets = Detections(np.array([[10, 10, 50, 100], [200, 10, 240, 100]], np.float32), np.array([0.9, 0.8], np.float32))
    t1, t2 = CameraTracker("a", TrackerConfig(kind=kind)), CameraTracker("b", TrackerConfig(kind="botsort"))
    for _ in range(3):
        ids1 = sorted(t.local_id for t in t1.update(dets))
    t2b = CameraTracker("c", TrackerConfig(kind=kind))  # created later: must not continue another camera's counter
    for _ in range(3):
        ids2 = sorted(t.local_id for t in t2.update(dets))
        ids3 = sorted(t.local_id for t in t2b.update(dets))
    assert ids1 == ids2 == ids3 == [1, 2]


def test_cut_crops_clips_boxes_and_returns_rgb():
    img = np.zeros((20, 10, 3), np.uint8)
    img[..., 0] = 255  # blue in BGR
    crops = cut_crops(img, np.array([[-5, -5, 5, 30]], np.float32), 8, 4)
    assert crops.shape == (1, 8, 4, 3) and (crops[..., 2] == 255).all() and (crops[..., 0] == 0).all()


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def test_third_party_onnx_gets_size_from_model_and_normalisation_from_config(tmp_path):
    from edge.reid.config import NormalizationConfig

    torch.manual_seed(0)
    net = TinyNet().eval()
    path = tmp_path / "osnet_like.onnx"
    torch.onnx.export(
        net,
        torch.zeros(1, 3, 32, 16),
        str(path),
        input_names=["images"],
        output_names=["out"],
        dynamic_axes={"images": {0: "b"}, "out": {0: "b"}},
        dynamo=False,
    )
    norm = NormalizationConfig(scale=255.0, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    backend = OnnxRuntimeBackend(str(path), normalization=norm, max_batch=2)
    assert backend.input_size == (32, 16) and backend.meta.method == "third_party"
    crops = np.random.default_rng(0).integers(0, 255, (5, 32, 16, 3), dtype=np.uint8)
    emb = backend.embed(crops)
    x = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    ref = torch.nn.functional.normalize(net(x), dim=1).detach().numpy()
    assert emb.global_.shape == (5, 8) and np.allclose(emb.global_, ref, atol=1e-5)


def test_torch_and_onnxruntime_backends_agree_on_an_exported_model(tmp_path):
    from export.onnx_export import export_onnx
    from trainer.config import ModelConfig
    from trainer.models import build_model, save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(backbone={"name": "tiny-vit"}, image_size=(64, 32), sie={"enabled": True})
    ckpt = save_checkpoint(tmp_path / "m.pt", build_model(cfg, num_classes=4, num_cameras=2).eval(), cfg, num_cameras=2)
    onnx_path, _ = export_onnx(ckpt, tmp_path / "m.onnx")
    ort_backend, torch_backend = OnnxRuntimeBackend(str(onnx_path)), TorchBackend(str(ckpt))
    assert ort_backend.input_size == torch_backend.input_size == (64, 32) and ort_backend.meta.camera_input == "camera"
    image = np.random.default_rng(1).integers(0, 255, (120, 80, 3), dtype=np.uint8)
    crops = ort_backend.crops(image, np.array([[0, 0, 40, 100], [30, 10, 80, 120]], np.float32))
    cams = np.array([0, 1])
    a, b = ort_backend.embed(crops, cams).global_, torch_backend.embed(crops, cams).global_
    assert (a * b).sum(1).min() > 0.9999
    assert not np.allclose(ort_backend.embed(crops, cams[::-1]).global_, a)  # the camera input is used


def test_part_based_model_on_the_edge_backends_and_matching(tmp_path):
    """An RGANet export gives part features + confidences on both backends, and tracklets and
    identities carry them into the confidence-weighted similarity."""
    from core.embeddings import similarity
    from export.onnx_export import export_onnx
    from trainer.config import ModelConfig
    from trainer.models import build_model, save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(backbone={"name": "tiny-vit"}, image_size=(64, 32), method={"name": "rganet"})
    ckpt = save_checkpoint(tmp_path / "m.pt", build_model(cfg, num_classes=4, num_cameras=2).eval(), cfg, num_cameras=2)
    onnx_path, meta = export_onnx(ckpt, tmp_path / "m.onnx")
    ort_backend, torch_backend = OnnxRuntimeBackend(str(onnx_path)), TorchBackend(str(ckpt))
    image = np.random.default_rng(1).integers(0, 255, (120, 80, 3), dtype=np.uint8)
    crops = ort_backend.crops(image, np.array([[0, 0, 40, 100], [30, 10, 80, 120], [5, 5, 60, 110]], np.float32))
    a, b = ort_backend.embed(crops), torch_backend.embed(crops)
    assert a.parts.shape == (3, 4, meta.embedding_dim - 128) and a.part_conf.shape == (3, 4)  # tiny-vit: 192 + 128
    assert np.abs(a.part_conf - b.part_conf).max() < 1e-4 and (a.parts * b.parts).sum(-1).min() > 0.9999

    def tracklet(cam, rows):
        t = Tracklet(cam, 1, 0, 0, 0, 0, np.zeros(4), 1.0)
        for i in rows:
            t.add_embedding(a.global_[i], 1.0, a.parts[i], a.part_conf[i])
        return t

    t1, t2 = tracklet("cam1", [0, 1]), tracklet("cam2", [2])
    assert t1.appearance().parts.shape == (1, 4, a.parts.shape[-1])
    engine = IdentityEngine(EngineSettings(threshold=-1.0, scale=1.0, min_embeddings=1))
    engine.update([t1.summary()], 0.0)
    ident = engine.identities[1]
    assert engine.appearance(ident).parts is not None
    score = engine.score(t2.summary(), ident)  # (cos - threshold) / scale with the part-aware cosine
    assert score - 1.0 == pytest.approx(float(similarity(t2.appearance(), engine.appearance(ident))[0, 0]), abs=1e-6)
    assert score - 1.0 != pytest.approx(float(t2.embedding @ ident.embedding), abs=1e-4)  # the parts count


def test_weighted_mean_ignores_a_part_where_it_was_hidden():
    from core.embeddings import Embeddings, weighted_mean

    parts = np.array([[[1.0, 0], [1.0, 0]], [[0, 1.0], [0, 1.0]]])
    conf = np.array([[1.0, 1.0], [1.0, 0.0]])  # the second crop does not show part 1
    mean = weighted_mean(Embeddings(np.eye(2), parts, conf), np.array([1.0, 1.0]))
    assert np.allclose(mean.parts[0, 1], [1, 0])  # part 1 comes from the first crop only
    assert np.allclose(mean.parts[0, 0], np.array([1, 1]) / np.sqrt(2))
    assert np.allclose(mean.part_conf, [[1.0, 0.5]])


def test_publisher_sends_multipart_events_a_subscriber_can_decode():
    pub = EventPublisher("tcp://127.0.0.1:56781")
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect("tcp://127.0.0.1:56781")
    sub.setsockopt_string(zmq.SUBSCRIBE, "identity")
    got = None
    deadline = time.time() + 5
    while got is None and time.time() < deadline:  # PUB/SUB joins late: publish until heard
        pub.publish("track/cam1", {"event": "new"})
        pub.publish("identity/3", {"event": "new", "global_id": 3}, np.arange(4, dtype=np.float32))
        if sub.poll(100):
            got = decode(sub.recv_multipart())
    pub.close()
    sub.close(0)
    topic, header, emb = got
    assert topic == "identity/3" and header["schema"] == SCHEMA and header["version"] == 2
    assert header["global_id"] == 3 and header["embedding_dim"] == 4 and header["seq"] >= 1 and "publish_ts" in header
    assert np.array_equal(emb, np.arange(4, dtype=np.float16))
    json.dumps(header)


def test_publisher_never_blocks_on_a_subscriber_that_stopped_reading():
    pub = EventPublisher("tcp://127.0.0.1:56782", high_water_mark=10, queue_size=100)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 10)
    sub.connect("tcp://127.0.0.1:56782")
    sub.setsockopt_string(zmq.SUBSCRIBE, "")
    time.sleep(0.2)
    for i in range(20000):  # never read: publish must still return
        pub.publish("track/cam1", {"event": "update", "i": i, "pad": "x" * 200})
    pub.close()
    sub.close(0)
    assert pub.sent + pub.dropped <= 20000 and pub.dropped > 0


def test_images_waiting_for_encoding_are_bounded_and_never_crowd_out_events():
    """Previews whose JPEG encoding falls behind are dropped at the image bound; the identity
    event published after them still goes out, and nothing is left counted as pending."""
    pub = EventPublisher("tcp://127.0.0.1:56783", queue_size=100, max_pending_images=3)

    def slow_jpeg():
        time.sleep(0.05)
        return b"\xff\xd8jpeg"

    for _ in range(20):
        pub.publish("frame/cam1", {"event": "preview"}, jpeg=slow_jpeg)
    pub.publish("identity/1", {"event": "new", "global_id": 1})
    pub.close(timeout=5)
    assert pub.images_dropped >= 16 and pub.sent >= 2 and pub.dropped == 0
    assert pub._pending_images == 0


def test_a_file_camera_pipeline_with_an_onnx_model_loads_no_training_code_or_simulator(tmp_path):
    """The edge runtime imports what its config needs: with a video file and the ONNX backend,
    building the pipeline pulls in neither open_clip, the training models and data, nor the
    synthetic world."""
    import subprocess
    import sys

    import cv2
    import yaml
    from conftest import REPO

    video = cv2.VideoWriter(str(tmp_path / "cam.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for _ in range(3):
        video.write(np.zeros((48, 64, 3), np.uint8))
    video.release()
    demo = REPO / "edge" / "demo_models"
    (tmp_path / "cams.yaml").write_text(
        yaml.safe_dump(
            {
                "cameras": [{"id": "door", "source": str(tmp_path / "cam.mp4")}],
                "detector": {"weights": str(demo / "detector.onnx"), "imgsz": 320},
                "reid": {"backend": "onnxruntime", "model": str(demo / "reid.onnx")},
                "publisher": {"enabled": False},
            }
        )
    )
    code = (
        "import sys; from edge.runtime.config import load_edge_config; from edge.runtime.pipeline import EdgePipeline; "
        f"EdgePipeline(load_edge_config({str(tmp_path / 'cams.yaml')!r})); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('open_clip', 'onnx', 'trackeval', 'timm') "
        "or m.startswith(('trainer.models', 'trainer.data', 'trainer.engine', 'sim'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def track_ids_after_a_gap(kind: str, missed: int) -> list[int]:
    """A person seen for 9 s, missed by ``missed`` updates, then seen again where they stood; the
    box processes one frame in three of a 10 fps camera (updates 0.3 s apart)."""
    tracker = CameraTracker("a", TrackerConfig(kind=kind, lost_s=2.0), frame_rate=10.0)
    person = Detections(np.array([[10, 10, 50, 100]], np.float32), np.array([0.9], np.float32))
    ids, t = [], 0.0
    for seen in [True] * 30 + [False] * missed + [True] * 3:
        ids += [tr.local_id for tr in tracker.update(person if seen else Detections.empty(), timestamp=t)]
        t += 0.3
    return ids


@pytest.mark.parametrize("kind, kept, ended", [("bytetrack", 5, 6), ("ultralytics-bytetrack", 4, 10)])
def test_a_lost_track_is_kept_for_seconds_whatever_the_processed_rate(kind, kept, ended):
    """lost_s 2.0 at one update per 0.3 s. Roboflow's ByteTrack counts media time exactly: back
    1.8 s after last seen (5 updates missed, 18 camera frames) keeps the id, 2.1 s is a new track.
    Ultralytics' counts calls, re-derived from the measured rate (7 here) plus a last-chance match."""
    assert set(track_ids_after_a_gap(kind, kept)) == {1}
    assert set(track_ids_after_a_gap(kind, ended)) == {1, 2}
    tracker = CameraTracker("a", TrackerConfig(kind=kind, lost_s=2.0), frame_rate=10.0)
    book = TrackletBook("a", lost_s=tracker.lost_s)
    person = Track("a", 1, np.array([0, 0, 10, 20], np.float32), 0.9)
    book.update([person], Frame("a", 1, 0.0, np.zeros((10, 10, 3), np.uint8)))
    ends = []
    for i in range(3, 40, 3):
        events, _ = book.update([], Frame("a", i + 1, i / 10, np.zeros((10, 10, 3), np.uint8)))
        ends += [round(i / 10, 1) for e, _ in events if e == "ended"]
    assert ends == [2.1]


def test_ultralytics_yaml_gets_the_typed_thresholds_set_and_keeps_its_own_otherwise(tmp_path):
    from edge.runtime.ultralytics_tracking import tracker_args

    defaults = tracker_args(TrackerConfig(kind="ultralytics-bytetrack", high_score=0.6, min_iou=0.3))
    assert (defaults.track_high_thresh, defaults.track_low_thresh, defaults.match_thresh) == (0.6, 0.1, 0.7)
    own = tmp_path / "mine.yaml"
    own.write_text(Path(defaults_yaml()).read_text().replace("track_low_thresh: 0.1", "track_low_thresh: 0.05"))
    mine = tracker_args(TrackerConfig(kind="ultralytics-bytetrack", config=str(own), high_score=0.6))
    assert (mine.track_high_thresh, mine.track_low_thresh) == (0.6, 0.05)  # its own low, the file's high


def defaults_yaml() -> str:
    from ultralytics.utils.checks import check_yaml

    return str(check_yaml("bytetrack.yaml"))
