"""Camera sources that cannot deliver, as an operator meets them: a video file or folder that
cannot be read is a config error with its reason, found before any model loads; an output folder
that cannot be written likewise; a stream or USB camera that fails gives one warning line with
the reason per retry (OpenCV's and FFmpeg's own output silenced), counted in ``reconnects``; a
server that accepts and never answers is given up within 5 s; a run in which no camera ever
delivered a frame exits 1; SIGINT ends ``edge.run`` within 3 s, even while its models load.

Real files, real sockets (a silent TCP listener standing in for an RTSP server, an MJPEG-over-HTTP
server that stalls) and real ``python -m edge.run`` processes."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import REPO

from core.configio import ConfigError
from edge.runtime.config import CameraConfig, load_edge_config
from edge.runtime.readers import make_reader
from edge.runtime.source_diagnosis import SourceError
from edge.runtime.sources import CameraCapture

DEMO = REPO / "edge" / "demo_models"
OPENCV_NOISE = ("[ WARN", "[ERROR", "VIDEOIO", "OpenCV(", "moov atom", "@ 0x")


def write_video(path: Path, frames: int = 30, fourcc: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (160, 120))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (120, 160, 3), np.uint8))
    writer.release()
    return path


def cut_in_half(path: Path, out: Path) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def cams_file(tmp_path: Path, cameras: list[dict], **sections) -> Path:
    """A camera file for a fast CLI run: the demo detector, no ReID, no publisher."""
    cfg = {
        "cameras": cameras,
        "detector": {"weights": str(DEMO / "detector.onnx"), "imgsz": 320, "conf": 0.4},
        "publisher": {"enabled": False},
        "outputs": {"mot_dir": str(tmp_path / "mot")},
        "run": {"stats_interval_s": 1},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = tmp_path / "cams.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def bad_sources(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Sources that exist but cannot be a camera, and the reason each is refused with."""
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    (no_images / "readme.txt").write_text("x")
    broken = tmp_path / "broken" / "img1"
    broken.mkdir(parents=True)
    (broken / "000001.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return {
        "truncated mp4": (
            cut_in_half(write_video(tmp_path / "whole.mp4"), tmp_path / "cut.mp4"),
            "an MP4 without its index (no 'moov' box): truncated, or a recording that was never finished",
        ),
        "text named .mp4": (text, "a text file, not a video"),
        "README.md": (REPO / "README.md", "a text file, not a video"),
        "empty file": (empty, "an empty file (0 bytes)"),
        "folder without images": (no_images, "no images (.bmp, .jpeg, .jpg, .png) in"),
        "undecodable image": (broken.parent, "cannot decode its first image 000001.jpg"),
    }


@pytest.mark.parametrize(
    "case",
    ["truncated mp4", "text named .mp4", "README.md", "empty file", "folder without images", "undecodable image"],
)
def test_a_file_or_folder_that_cannot_be_read_is_a_config_error_with_its_reason(tmp_path, case):
    source, reason = bad_sources(tmp_path)[case]
    with pytest.raises(ConfigError) as err:
        load_edge_config(cams_file(tmp_path, [{"id": "a", "source": str(source)}]))
    assert str(err.value).startswith(f"{tmp_path / 'cams.yaml'}: cameras.0.source: {reason}")
    assert str(source) in str(err.value) and "\n" not in str(err.value)


def test_a_video_and_an_image_folder_that_decode_are_accepted(tmp_path):
    folder = tmp_path / "seq" / "img1"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "000001.jpg"), np.zeros((32, 32, 3), np.uint8))
    cams = [{"id": "a", "source": str(write_video(tmp_path / "ok.mp4"))}, {"id": "b", "source": str(folder.parent)}]
    assert [c.id for c in load_edge_config(cams_file(tmp_path, cams)).cameras] == ["a", "b"]


def test_the_cli_refuses_a_truncated_video_in_one_line_before_loading_any_model(tmp_path):
    video = cut_in_half(write_video(tmp_path / "whole.mp4"), tmp_path / "cut.mp4")
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.run",
            "--cameras",
            str(cams_file(tmp_path, [{"id": "door", "source": str(video)}])),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [
        f"error: {tmp_path / 'cams.yaml'}: cameras.0.source: an MP4 without its index (no 'moov' box): "
        f"truncated, or a recording that was never finished: {video}"
    ]  # nothing else: no model loaded, no FFmpeg line
    assert time.monotonic() - started < 20


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create entries in (root: made immutable, where allowed)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    if (
        os.access(folder, os.W_OK)
        and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0
    ):
        pytest.skip("running as root without the right to make a folder immutable")
    return folder


def test_an_output_folder_that_cannot_be_written_is_a_config_error_naming_the_field(tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    cams = [{"id": "a", "source": "synthetic://tiny?camera=cam1"}]
    with pytest.raises(
        ConfigError, match=rf"cams.yaml: outputs.mot_dir: {a_file} is a file, not a folder: {a_file}/mot$"
    ):
        load_edge_config(cams_file(tmp_path, cams, outputs={"mot_dir": str(a_file / "mot")}))
    with pytest.raises(ConfigError, match=r"cams.yaml: outputs.floor_map: is a folder, not a file"):
        load_edge_config(cams_file(tmp_path, cams, outputs={"floor_map": str(tmp_path)}))
    locked = unwritable_folder(tmp_path)
    try:
        with pytest.raises(ConfigError, match=rf"cams.yaml: outputs.video_dir: folder not writable: {locked}$"):
            load_edge_config(cams_file(tmp_path, cams, outputs={"video_dir": str(locked / "videos" / "today")}))
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
        locked.chmod(0o700)


class SilentServer:
    """A TCP listener that accepts connections and never sends a byte (a hung RTSP server)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def opened_within(reader, seconds: float) -> tuple[bool, str]:
    """Open ``reader`` in a thread: (did it give up within ``seconds``, its error)."""
    result = {}

    def attempt():
        try:
            reader.open()
            result["error"] = "opened"
        except SourceError as exc:
            result["error"] = str(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(seconds)
    return not worker.is_alive(), result.get("error", "")


def test_an_rtsp_server_that_accepts_and_never_answers_is_given_up_within_5_s():
    server = SilentServer()
    try:
        url = f"rtsp://admin:secret@127.0.0.1:{server.port}/stream1"
        started = time.monotonic()
        gave_up, error = opened_within(make_reader(url), 5.0)  # OpenCV's own default: 30 s
        assert gave_up, "still waiting for the silent server after 5 s"
        assert 3.5 < time.monotonic() - started < 5.0 and server.accepted
        assert (
            error
            == f"cannot open rtsp://admin:***@127.0.0.1:{server.port}/stream1: no answer within 4 s (open timeout)"
        )
    finally:
        server.close()


def test_a_refused_or_unknown_stream_says_why_at_once():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    for url, reason in (
        (f"rtsp://127.0.0.1:{port}/x", f"127.0.0.1:{port}: Connection refused"),
        ("rtsp://no-such-camera.invalid/x", "unknown host 'no-such-camera.invalid'"),
    ):
        started = time.monotonic()
        with pytest.raises(SourceError) as err:
            make_reader(url).open()
        assert str(err.value) == f"cannot open {url}: {reason}" and time.monotonic() - started < 3


def test_a_stream_that_stops_sending_frames_is_noticed_by_the_read_timeout():
    """MJPEG over HTTP: a few frames, then the server keeps the connection open and says nothing."""
    jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 128, np.uint8))[1].tobytes()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held = []

    def serve():
        conn, _ = server.accept()
        held.append(conn)
        conn.recv(4096)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n")
        for _ in range(10):
            conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg))

    threading.Thread(target=serve, daemon=True).start()
    reader = make_reader(f"http://127.0.0.1:{server.getsockname()[1]}/video.mjpg", timeout_s=2.0)
    try:
        reader.open()
        frames, result = 0, [None]
        while frames < 100:
            reading = threading.Thread(target=lambda: result.__setitem__(0, reader.read()), daemon=True)
            started = time.monotonic()
            reading.start()
            reading.join(4.0)  # OpenCV's own read timeout: 30 s
            assert not reading.is_alive(), f"a read still waiting after 4 s (frame {frames + 1})"
            if result[0] is None:
                break
            frames += 1
        assert frames >= 5 and 1.5 < time.monotonic() - started < 4.0
        assert reader.problem == "no frame within 2 s (read timeout)"
    finally:
        reader.close()
        server.close()
        for conn in held:
            conn.close()


def missing_usb_index() -> int:
    return next(i for i in range(60, 200) if not Path(f"/dev/video{i}").exists())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reason names the Linux device node")
def test_every_retry_of_a_missing_usb_camera_is_one_warning_with_the_reason_and_counted(caplog):
    index = missing_usb_index()
    stop = threading.Event()
    capture = CameraCapture(CameraConfig(id="desk", source=str(index)), threading.Event(), stop, reconnect_max_s=0.25)
    with caplog.at_level(logging.WARNING, logger="edge.runtime.sources"):
        capture.start()
        time.sleep(2.0)
        stop.set()
        capture.join(5)
    warnings = [r.getMessage() for r in caplog.records if r.name == "edge.runtime.sources"]
    assert capture.reconnects >= 4 and len(warnings) in (capture.reconnects, capture.reconnects + 1)
    assert (
        warnings[0] == f"camera desk: cannot open USB camera {index}: no such device /dev/video{index}; retry 1 in 0.2s"
    )
    assert capture.problem == f"cannot open USB camera {index}: no such device /dev/video{index}"


def test_a_watchdog_restart_keeps_the_camera_s_counts():
    from types import SimpleNamespace

    from edge.runtime.watchdog import CaptureWatchdog

    dead = SimpleNamespace(
        cam=SimpleNamespace(id="door"),
        reader=SimpleNamespace(live=True),
        error="RuntimeError: boom",
        reconnects=3,
        dropped=7,
        is_alive=lambda: False,
    )
    fresh = SimpleNamespace(reconnects=0, dropped=0, start=lambda: None)
    wd = CaptureWatchdog([dead], lambda cam: fresh)
    wd.check(0.0)
    wd.check(1.0)
    assert wd.captures == [fresh] and (fresh.reconnects, fresh.dropped) == (3, 7)


def test_a_file_that_ends_before_its_header_says_is_reported_as_truncated(tmp_path, caplog):
    """An AVI cut in half still opens and plays its first half: the camera ends with a warning."""
    video = cut_in_half(write_video(tmp_path / "whole.avi", frames=40, fourcc="MJPG"), tmp_path / "cut.avi")
    stop, new_frame = threading.Event(), threading.Event()
    capture = CameraCapture(CameraConfig(id="hall", source=str(video), realtime=False), new_frame, stop)
    taken = 0
    with caplog.at_level(logging.WARNING, logger="edge.runtime.sources"):
        capture.start()
        deadline = time.monotonic() + 30
        while not capture.finished and time.monotonic() < deadline:
            taken += capture.take() is not None
            new_frame.wait(0.05)
            new_frame.clear()
        taken += capture.take() is not None
    assert 0 < taken < 40
    assert (
        f"camera hall: {video} ended after {taken} of the 40 frames its header announces (truncated?)"
        in caplog.messages
    )


class StderrLines(threading.Thread):
    """A process's stderr, line by line, with the time each line came."""

    def __init__(self, proc: subprocess.Popen):
        super().__init__(daemon=True)
        self.proc, self.lines = proc, []

    def run(self):
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, text: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if text in line:
                    return at
            if self.proc.poll() is not None and not self.is_alive():
                break
            time.sleep(0.05)
        pytest.fail(f"no line with {text!r} in {timeout} s: {[line for _, line in self.lines][-20:]}")

    def text(self) -> list[str]:
        return [line for _, line in self.lines]


def start_cli(*args: str) -> tuple[subprocess.Popen, StderrLines]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.run", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    lines = StderrLines(proc)
    lines.start()
    return proc, lines


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reason names the Linux device node")
def test_a_run_whose_cameras_never_deliver_warns_once_per_retry_counts_them_and_exits_1(tmp_path):
    """A USB index that does not exist and a silent "RTSP server": one warning line per retry
    with the reason and nothing from OpenCV/FFmpeg; the run ends at ``duration_s`` (it used to
    wait for a frame first) and, no camera having delivered a frame, exits 1 naming both."""
    index, server = missing_usb_index(), SilentServer()
    url = f"rtsp://127.0.0.1:{server.port}/stream1"
    cfg = cams_file(
        tmp_path,
        [{"id": "desk", "source": str(index)}, {"id": "door", "source": url}],
        run={"duration_s": 6.0, "reconnect_max_s": 0.5},
    )
    try:
        proc, lines = start_cli("--cameras", str(cfg), "--report", str(tmp_path / "report.json"))
        proc.wait(timeout=120)
        lines.join(5)
    finally:
        server.close()
    err = lines.text()
    assert proc.returncode == 1, err[-20:]
    assert not [line for line in err if any(noise in line for noise in OPENCV_NOISE)]
    desk = [line for line in err if "camera desk: " in line]
    door = [line for line in err if "camera door: " in line]
    assert desk and all(
        f"WARNING edge.runtime.sources: camera desk: cannot open USB camera {index}: "
        f"no such device /dev/video{index}; retry " in line
        for line in desk
    )
    assert door and all(
        f"WARNING edge.runtime.sources: camera door: cannot open {url}: no answer within 4 s (open timeout); retry "
        in line
        for line in door
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["reconnects"]["desk"] >= len(desk) - 1 >= 3 and report["reconnects"]["door"] >= 1
    assert err[-1] == (
        f"error: no camera delivered a frame (desk: cannot open USB camera {index}: no such device /dev/video{index}; "
        f"door: cannot open {url}: no answer within 4 s (open timeout))"
    )


def demo_cli(tmp_path: Path, *overrides: str) -> tuple[subprocess.Popen, StderrLines]:
    return start_cli(
        "--cameras",
        str(REPO / "configs" / "cams.demo.yaml"),
        "--report",
        str(tmp_path / "report.json"),
        "publisher.enabled=false",
        f"outputs.mot_dir={tmp_path / 'mot'}",
        f"outputs.floor_map={tmp_path / 'floor.png'}",
        "run.stats_interval_s=1",
        *overrides,
    )


def stop_and_time(proc: subprocess.Popen) -> float:
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
    return time.monotonic() - sent


def test_sigint_while_the_models_load_ends_the_run_within_3_s(tmp_path):
    proc, lines = demo_cli(tmp_path)
    lines.wait_for("INFO edge.run: starting: 3 camera(s)", 60)  # config loaded, models loading (~8 s on a busy CPU)
    took = stop_and_time(proc)
    lines.join(5)
    assert took < 3.0, f"{took:.1f} s from SIGINT to exit"
    assert (
        proc.returncode == 1
        and lines.text()[-1] == "error: stopped by SIGINT while loading, before any camera delivered a frame"
    )
    assert not any("Traceback" in line for line in lines.text())


def test_sigint_after_the_first_frames_ends_the_run_within_3_s_with_results_flushed(tmp_path):
    proc, lines = demo_cli(tmp_path)
    lines.wait_for("INFO edge.runtime.pipeline: fps[", 120)  # the first stats line: frames are flowing
    took = stop_and_time(proc)
    lines.join(5)
    assert took < 3.0, f"{took:.1f} s from SIGINT to exit"
    assert proc.returncode == 0, lines.text()[-20:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert all(0 < n < 600 for n in report["processed"].values())
    assert (tmp_path / "floor.png").stat().st_size > 0 and (tmp_path / "mot" / "cam1.txt").exists()


def test_a_second_sigint_ends_a_run_that_is_still_flushing_at_once():
    """After loading, the first signal asks for a clean stop and flush; a second one (a site node
    waiting for its hub's final ids, say) ends the process at once, exit 1, with one line."""
    code = (
        "import os, signal, time\nfrom edge.run import SignalStop\nfrom core.cli import setup_console_logging\n"
        "setup_console_logging()\ns = SignalStop(); s.loaded()\nos.kill(os.getpid(), signal.SIGINT); time.sleep(0.2)\n"
        "assert s.event.is_set()\nos.kill(os.getpid(), signal.SIGINT); time.sleep(10)\nprint('not reached')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 1 and "not reached" not in proc.stdout
    assert proc.stderr.strip().splitlines()[-1].endswith("second SIGINT: ending now, results not flushed")


class CountingReader:
    """A video-like reader whose image holds its frame number: a frame can be retrieved only until
    the next grab (as OpenCV's ``grab``/``retrieve``); counts grabs and decodes. ``grab_s`` makes
    each grab take that long (a slow demuxer)."""

    live = False
    frame_count = None
    problem = None

    def __init__(self, frames: int, fps: float, grab_s: float = 0.0):
        self.frames, self.fps, self.grab_s = frames, fps, grab_s
        self.position = self.grabs = self.decodes = 0
        self.closed = False

    def open(self) -> None:
        self.position, self.closed = 0, False

    def grab(self) -> bool:
        if self.position >= self.frames:
            return False
        time.sleep(self.grab_s)
        self.position += 1
        self.grabs += 1
        return True

    def retrieve(self, position: int):
        if self.closed or position != self.position:  # like OpenCV after release() or a later grab
            return None
        self.decodes += 1
        return np.full((4, 4, 3), self.position - 1, np.uint8)

    def read(self):
        return self.retrieve(self.position) if self.grab() else None

    def close(self) -> None:
        self.closed = True


def capture_of(reader: CountingReader, **cam) -> tuple[CameraCapture, threading.Event]:
    stop = threading.Event()
    capture = CameraCapture(CameraConfig(id="hall", source="file.mp4", **cam), threading.Event(), stop, reader=reader)
    return capture, stop


def test_a_camera_played_in_real_time_decodes_only_the_frames_the_pipeline_takes():
    """A pipeline that keeps one frame in several no longer pays for decoding the others: the
    thread grabs each frame at its time and the image is made when taken (the right one)."""
    reader = CountingReader(frames=60, fps=200.0)
    capture, stop = capture_of(reader, realtime=True)
    capture.start()
    taken = []
    while not capture.finished:
        time.sleep(0.03)
        frame = capture.take()
        if frame is not None:
            taken.append(frame)
    capture.join(5)
    last = capture.take()
    taken += [last] if last is not None else []
    assert reader.grabs == 60 and 0 < len(taken) < 30
    assert reader.decodes == len(taken)
    assert all(int(f.image[0, 0, 0]) == f.index - 1 for f in taken)  # each image is its own frame's
    assert [f.index for f in taken] == sorted({f.index for f in taken})
    assert capture.dropped == 60 - len(taken)


def test_frames_a_camera_s_fps_strides_over_are_grabbed_never_decoded():
    reader = CountingReader(frames=30, fps=30.0)
    capture, stop = capture_of(reader, realtime=False, fps=10)
    capture.start()
    taken = []
    while not (capture.finished and capture._latest is None):
        frame = capture.take()
        if frame is not None:
            taken.append(frame)
        time.sleep(0.001)
    capture.join(5)
    assert [f.index for f in taken] == list(range(1, 31, 3))
    assert reader.decodes == 10 and reader.grabs == 30


def test_a_grabbed_frame_is_decoded_before_its_reader_closes():
    """The last frame of a file played in real time, taken only after the file ended."""
    reader = CountingReader(frames=3, fps=100.0)
    capture, stop = capture_of(reader, realtime=True)
    capture.start()
    capture.join(5)
    frame = capture.take()
    assert reader.closed and frame is not None and frame.index == 3 and int(frame.image[0, 0, 0]) == 2


def test_a_frame_taken_while_the_thread_grabs_past_it_is_never_another_frame_s_image():
    """Frames strided over are grabbed right before the next one: a take in between must not get
    the later frame's pixels under the earlier frame's number (it gets nothing, counted dropped)."""
    reader = CountingReader(frames=80, fps=200.0, grab_s=0.004)
    capture, stop = capture_of(reader, realtime=True, fps=50)
    capture.start()
    taken = []
    while not capture.finished:
        frame = capture.take()
        if frame is not None:
            taken.append(frame)
        time.sleep(0.0015)
    capture.join(5)
    assert len(taken) >= 5
    assert all(int(f.image[0, 0, 0]) == f.index - 1 for f in taken)
    assert all(f.index % 4 == 1 for f in taken)  # stride 4: frames 1, 5, 9, ...
