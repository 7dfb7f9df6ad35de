"""What the operator reads on the terminal, from real processes: a bad detector file or hub store
is one ``error:`` line naming the file, Ultralytics and FAISS print nothing of their own (no
settings banner, no pip "AutoUpdate", no loader tracebacks), ``edge.listen`` says what it waits
for, and the hub's ``stats`` events read as the hub's stats."""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO
from test_site import HubProcess, free_port

DEMO_CAMS = REPO / "configs" / "cams.demo.yaml"
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) ")  # core.cli.setup_console_logging's lines


def clean_env(tmp_path: Path) -> dict:
    """The environment of a first run on a fresh box: no Ultralytics settings file yet (its banner
    would show) and none of the YOLO_* variables the product sets itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env.update(YOLO_CONFIG_DIR=str(tmp_path / "ultralytics_config"), OMP_NUM_THREADS="1")
    return env


def edge_run(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    args = [
        "-m",
        "edge.run",
        "--cameras",
        str(DEMO_CAMS),
        "run.max_frames=2",
        f"publisher.endpoint=tcp://127.0.0.1:{free_port()}",
        *overrides,
    ]
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=clean_env(tmp_path), capture_output=True, text=True, timeout=180
    )


@pytest.mark.parametrize(
    "suffix, what", [(".pt", "is not a loadable checkpoint"), (".onnx", "is not a loadable ONNX model")]
)
def test_a_corrupt_detector_file_is_one_line(tmp_path, suffix, what):
    """Ultralytics raises a TypeError with a second line recommending its own CLI, ONNX Runtime an
    InvalidProtobuf with its error codes: the runtime refuses the file at start in one line naming it
    (a .pt through Ultralytics, an .onnx through the exported backend)."""
    weights = tmp_path / f"detector{suffix}"
    weights.write_bytes(random.Random(454).randbytes(5000))  # unpickled, these bytes asked for a MemoryError
    proc = edge_run(tmp_path, f"detector.weights={weights}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    others = [line for line in proc.stderr.splitlines() if not LOG_LINE.match(line)]
    assert len(others) == 1 and others[0].startswith(f"error: detector.weights: {weights} {what}"), proc.stderr[-3000:]
    assert "TypeError" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""  # no Ultralytics settings banner, no "Loading ... for ONNX Runtime inference"


def test_a_missing_openvino_names_the_extra(tmp_path):
    """An OpenVINO detector on an install without the [openvino] extra: one line naming the extra,
    like every other missing extra (Ultralytics would pip-install openvino at run time)."""
    folder = tmp_path / "yolo_openvino_model"
    folder.mkdir()
    (folder / "yolo.xml").write_text("<net/>")
    argv = [
        "edge.run",
        "--cameras",
        str(DEMO_CAMS),
        f"detector.weights={folder}",
        "run.max_frames=2",
        f"publisher.endpoint=tcp://127.0.0.1:{free_port()}",
    ]
    code = (
        "import importlib.util as u, runpy, sys; real = u.find_spec; "
        "u.find_spec = lambda name, *a: None if name == 'openvino' else real(name, *a); "
        f"sys.argv = {argv!r}; runpy.run_module('edge.run', run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=clean_env(tmp_path), capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: the openvino detector {folder} needs openvino, which this install lacks: "
        "pip install 'clipreid-edge[openvino]'"
    ], proc.stderr[-3000:]


def test_loading_the_demo_detector_prints_nothing(tmp_path):
    """First use on a fresh box: Ultralytics would print its 'Creating new Ultralytics Settings'
    banner (and its loading lines) into the product's terminal."""
    code = (
        "from edge.runtime.detector import PersonDetector; "
        "d = PersonDetector('edge/demo_models/detector.pt', imgsz=320); print(len(d([])))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=clean_env(tmp_path), capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout, proc.stderr) == ("0\n", "")


AUTOUPDATE = """
import subprocess
import edge.runtime.detector  # the product's import, before Ultralytics' own
from ultralytics.utils import checks
calls = []
subprocess.check_output = lambda cmd, *a, **k: calls.append(" ".join(map(str, cmd))) or ""
checks.ONLINE = True  # as on a box with internet: only the setting may stop the install
checks.check_requirements("clipreid-edge-no-such-package")
print(calls)
"""


def test_ultralytics_never_pip_installs_at_run_time(tmp_path):
    """Ultralytics' check_requirements pip-installs whatever it misses (onnx for an .onnx detector
    on an [edge] install, openvino, ...): the product switches that off before importing it."""
    proc = subprocess.run(
        [sys.executable, "-c", AUTOUPDATE],
        cwd=REPO,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]", proc.stdout
    assert "AutoUpdate" not in proc.stdout + proc.stderr


def not_a_database(path: Path) -> Path:
    path.write_text("these are notes, not a database\n" * 10)
    return path


def another_programs_database(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE identities (name TEXT)")
    return path


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: p.mkdir() or p, "{store} is a directory; store names the hub's SQLite file (e.g. hub.sqlite)"),
        (not_a_database, "{store} is not an SQLite database (is it the hub's store?)"),
        (another_programs_database, "{store}: cannot use it as the hub's SQLite store: no such column: gid"),
    ],
    ids=["directory", "text file", "other database"],
)
def test_a_bad_hub_store_is_one_line_naming_file_and_field(tmp_path, make, says):
    """SQLite says 'unable to open database file' / 'file is not a database' and names nothing;
    FAISS's loader logs a ModuleNotFoundError for each CPU build the wheel lacks. The hub's whole
    output is one line naming its config file, the store field and the file."""
    store = make(tmp_path / "hub.sqlite")
    HubProcess(tmp_path, store=str(store))  # writes tmp_path/hub.yaml
    config = tmp_path / "hub.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "edge.hub", "--config", str(config)],
        cwd=REPO,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [f"error: {config}: store: " + says.format(store=store)], proc.stderr[-3000:]
    assert proc.stdout == ""


def stderr_lines(proc: subprocess.Popen) -> queue.Queue:
    """The process's stderr, a line at a time as it comes (a thread reads it: ``select`` on a
    buffered stream misses a second line already read into the buffer with the first)."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stderr:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def next_line(lines: queue.Queue, timeout: float) -> str:
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


def test_listen_says_what_it_waits_for(tmp_path):
    """A SUB socket connects silently even when nothing publishes there: edge.listen says what it
    listens to at once, and after --nudge-s of silence that nothing came, once, and still ends cleanly
    on Ctrl-C (it once hung there: a signal just before a blocking recv was never seen)."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    args = ["--endpoint", endpoint, "--topic", "identity", "--topic", "stats", "--nudge-s", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.listen", *args],
        cwd=REPO,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = stderr_lines(proc)
    try:
        assert next_line(lines, 60) == f"listening to {endpoint} for topics identity*, stats*; Ctrl-C stops"
        assert next_line(lines, 30).startswith(f"nothing from {endpoint} in 1 s: is a publisher running there")
        assert next_line(lines, 2) == ""  # said once
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        out = proc.stdout.read()
    finally:
        proc.kill()
    assert proc.returncode == 0 and out == "" and next_line(lines, 1) == ""


def test_the_hub_stats_read_as_the_hubs(tmp_path):
    """The hub publishes its own stats (no fps, no per-camera dropped frames): edge.listen printed
    them as a node's (`stats fps[] gallery=0 dropped=None`); it prints the hub's log line."""
    hub = HubProcess(tmp_path).start()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "edge.listen",
                "--endpoint",
                hub.cfg["publisher"]["endpoint"],
                "--topic",
                "stats",
                "--count",
                "1",
            ],
            cwd=REPO,
            env=clean_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        hub.stop()
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(
        r"#\d+ hub stats: 0 identities \(exact\), 0 live tracklets, nodes -, summaries 0, published 0, "
        r"malformed 0, replayed 0, refused 0\n",
        proc.stdout,
    ), proc.stdout
    assert "faiss" not in hub.text(), hub.text()  # no loader lines (ModuleNotFoundError ... swigfaiss_avx2)


def test_stats_lines_leave_out_what_the_sender_does_not_send():
    from edge.listen import describe

    assert describe("stats", {"seq": 3, "fps": {"cam1": 10.0}}) == "#3 stats fps[cam1=10.0]"
    node = {
        "seq": 4,
        "fps": {"cam1": 9.5, "cam2": 10.0},
        "gallery": 2,
        "dropped": {"cam1": 0, "cam2": 3},
        "events_dropped": 0,
    }
    assert describe("stats", node) == "#4 stats fps[cam1=9.5 cam2=10.0] gallery=2 dropped[cam1=0 cam2=3]"


def test_listen_says_which_ids_a_node_gave_while_its_hub_was_away():
    from edge.listen import describe

    new = {"seq": 5, "event": "new", "global_id": 10**9, "camera": "cam1", "local_id": 3, "provisional": True}
    said = "#5 identity 1000000000 new: cam1/3 (provisional id: the hub was away)"
    assert describe("identity/1000000000", new) == said
    assert describe("identity/7", {**new, "global_id": 7, "provisional": None}) == "#5 identity 7 new: cam1/3"


def test_a_pt_file_must_be_a_torch_checkpoint_before_it_is_unpickled(tmp_path):
    """Random bytes unpickled can ask for gigabytes (a MemoryError Ultralytics doesn't catch):
    only a zip archive or the older pickle with torch's magic number reaches torch.load."""
    import torch

    from edge.runtime.detector import checkpoint_problem

    good = tmp_path / "good.pt"
    torch.save({"model": None}, good)
    legacy = tmp_path / "legacy.pt"
    torch.save({"model": None}, legacy, _use_new_zipfile_serialization=False)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.pt"
    noise.write_bytes(random.Random(454).randbytes(5000))
    assert checkpoint_problem(str(good)) is None and checkpoint_problem(str(legacy)) is None
    assert checkpoint_problem(str(empty)) == f"detector.weights: {empty} is not a loadable checkpoint — empty"
    assert checkpoint_problem(str(noise)).startswith(
        f"detector.weights: {noise} is not a loadable checkpoint — neither"
    )
    assert checkpoint_problem(str(tmp_path / "model.onnx")) is None
