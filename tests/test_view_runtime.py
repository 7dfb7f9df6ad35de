"""What the runtime publishes for the view: preview frames and identity crops, off by default."""

from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import zmq
from test_edge_run import cams_yaml

from edge.runtime.capture_loop import run_pipeline
from edge.runtime.config import load_edge_config
from edge.wire.events import decode


class RawSubscriber(threading.Thread):
    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(f"tcp://127.0.0.1:{port}")
        self.sock.setsockopt_string(zmq.SUBSCRIBE, "")
        self.messages: list[list[bytes]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.sock.poll(50):
                self.messages.append(self.sock.recv_multipart())
        self.sock.close(0)


def run(tmp_path, port: int, **publisher) -> tuple[dict, list[list[bytes]]]:
    cams = [{"id": f"cam{i}", "source": f"synthetic://tiny?camera=cam{i}", "realtime": False} for i in (1, 2)]
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = cams_yaml(tmp_path, cams, port, publisher=publisher, run={"max_frames": 30, "stats_interval_s": 0.5})
    sub = RawSubscriber(port)
    sub.start()
    time.sleep(0.3)
    report = run_pipeline(load_edge_config(path))
    time.sleep(0.3)
    sub.stop.set()
    sub.join(2)
    return report, sub.messages


def test_previews_and_crops_are_published_when_on_and_absent_by_default(tmp_path):
    report, messages = run(tmp_path / "on", 56451, preview_fps=4, crops=True, crop_height=64, crop_max_bytes=6000)
    events = [decode(m) for m in messages]
    frames = [(e.header, e.jpeg) for e in events if e.family == "frame"]
    per_camera = {cam: [f for f in frames if f[0]["camera"] == cam] for cam in ("cam1", "cam2")}
    for cam, items in per_camera.items():
        assert 2 <= len(items) <= 4 * report["elapsed_s"] + 2, (cam, len(items), report["elapsed_s"])  # rate-limited
        for h, jpeg in items:
            assert len(jpeg) == h["jpeg_bytes"]
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape[:2] == (h["height"], h["width"]) and h["width"] <= 320
            for x0, y0, x1, y1, local_id, _gid in h["boxes"]:
                assert 0 <= x0 < x1 <= h["width"] + 1 and 0 <= y0 < y1 <= h["height"] + 1 and local_id >= 1
    assert any(h["boxes"] for h, _ in frames)
    identity = [(e.header, e.jpeg) for e in events if e.family == "identity"]
    cropped = [(h, j) for h, j in identity if j is not None]
    assert cropped and all(h["event"] in ("new", "assigned") for h, _ in cropped)
    for h, jpeg in cropped:
        assert len(jpeg) == h["jpeg_bytes"] <= 6000
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[0] <= 64
    assert all("jpeg_bytes" not in h for h, _ in identity if h["event"] in ("merged", "expired"))

    _, plain = run(tmp_path / "off", 56452)
    topics = [m[0].decode() for m in plain]
    assert topics and not any(t.startswith("frame/") for t in topics)
    assert not any("jpeg_bytes" in json.loads(m[1]) for m in plain) and all(len(m) == 2 for m in plain)


def test_publisher_encodes_deferred_images_on_its_thread_and_survives_a_failing_one(caplog):
    from edge.wire.publisher import EventPublisher

    port = 56453
    sub = RawSubscriber(port)
    pub = EventPublisher(f"tcp://127.0.0.1:{port}")
    sub.start()
    time.sleep(0.5)
    main_thread = threading.get_ident()
    threads = []

    def image() -> bytes:
        threads.append(threading.get_ident())
        return b"\xff\xd8jpeg"

    def broken() -> bytes:
        raise ValueError("bad pixels")

    pub.publish("frame/cam1", {"event": "frame"}, jpeg=image)
    pub.publish("identity/1", {"event": "new"}, jpeg=lambda: None)  # does not fit: left out
    pub.publish("identity/2", {"event": "new"}, jpeg=broken)
    pub.publish("identity/3", {"event": "assigned"}, jpeg=b"\xff\xd8abc")
    deadline = time.monotonic() + 5
    while len(sub.messages) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    pub.close()
    sub.stop.set()
    sub.join(2)
    got = {m[0].decode(): (json.loads(m[1]), m[2:]) for m in sub.messages}
    assert threads and threads[0] != main_thread
    assert got["frame/cam1"][0]["jpeg_bytes"] == 6 and got["frame/cam1"][1] == [b"\xff\xd8jpeg"]
    assert "jpeg_bytes" not in got["identity/1"][0] and got["identity/1"][1] == []
    assert "jpeg_bytes" not in got["identity/2"][0] and got["identity/2"][1] == []
    assert "JPEG for new failed: ValueError: bad pixels" in caplog.text
    assert got["identity/3"][0]["jpeg_bytes"] == 5
