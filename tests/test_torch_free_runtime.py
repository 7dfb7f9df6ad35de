"""The edge runtime runs the exported files alone: no PyTorch, no Ultralytics on its path.

The demo (its ONNX detector, Roboflow's ByteTrack, the ONNX ReID model, identities, events) runs a
few frames in a fresh interpreter, which then lists the modules it imported. The dev install has
torch and Ultralytics, so this catches an import that would pull them in; CI also installs
``.[edge]`` alone into a brand-new venv and runs the demo there (.ci/run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("torch", "torchvision", "ultralytics", "open_clip", "lap")

RUN_AND_LIST = """
import atexit, json, runpy, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted({{m.split('.')[0] for m in sys.modules}}))))
sys.argv = {argv!r}
runpy.run_module("edge.run", run_name="__main__")
"""


def imported_by(*overrides: str) -> set[str]:
    argv = [
        "edge.run",
        "--cameras",
        "configs/cams.demo.yaml",
        "run.max_frames=4",
        "publisher.enabled=false",
        "outputs.mot_dir=null",
        "outputs.floor_map=null",
        *overrides,
    ]
    proc = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST.format(argv=argv)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line[len("MODULES ") :]))


def test_the_demo_imports_no_torch_and_no_ultralytics():
    modules = imported_by()
    assert "onnxruntime" in modules and "trackers" in modules  # it did run the runtime
    assert not set(FORBIDDEN) & modules, sorted(set(FORBIDDEN) & modules)


def test_the_ultralytics_tracker_is_the_one_that_brings_it():
    """The check can fail: the same run with Ultralytics' BoT-SORT imports Ultralytics and torch."""
    modules = imported_by("tracker.kind=botsort")
    assert {"ultralytics", "torch"} <= modules


ENGINE_COMMAND = """
import sys, export.__main__ as cli
cli.require = lambda *a: None  # as on a Jetson with TensorRT; this machine may lack it
try:
    cli.main({argv!r})
except SystemExit as exc:
    print("EXIT", exc.code)
print("IMPORTED", sorted({{m.split('.')[0] for m in sys.modules}} & set({forbidden!r})))
"""


@pytest.mark.parametrize("command", ["detector-engine", "trt"], ids=["detector", "reid"])  # "trt": a GPU marker
def test_building_engines_imports_no_torch(command):
    """On a Jetson the engines are built where they run, from ONNX files, without PyTorch: the
    export command line up to the engine build (here it stops at a missing ONNX file, in one line)."""
    argv = [command, "--onnx", "/nonexistent/model.onnx", "--out", "/nonexistent/model.engine"]
    code = ENGINE_COMMAND.format(argv=argv, forbidden=FORBIDDEN)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["EXIT", "2", "IMPORTED", "[]"], proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "error: --onnx /nonexistent/model.onnx: file not found"
