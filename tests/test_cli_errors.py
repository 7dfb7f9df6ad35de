"""Every command-line tool turns its user's mistakes (a missing checkpoint, dataset or config, an
unknown scene) into one ``error: ...`` line and exit code 2, without a traceback."""

import subprocess
import sys

import pytest
from conftest import REPO

MISSING_CKPT = "/nonexistent/model.pt"
CASES = {
    "train: config": (
        ["-m", "trainer.train", "--config", "nowhere.yaml"],
        f"error: {REPO / 'nowhere.yaml'}: config file not found",
    ),
    "train: dataset": (
        [
            "-m",
            "trainer.train",
            "--config",
            "configs/tiny_synthetic.yaml",
            "data.dataset=market1501",
            "data.root=/nonexistent",
        ],
        "error: dataset root /nonexistent does not exist",
    ),
    "eval: checkpoint": (
        ["-m", "trainer.eval", "--config", "configs/tiny_synthetic.yaml", "--checkpoint", MISSING_CKPT],
        f"error: checkpoint not found: {MISSING_CKPT}",
    ),
    "robustness: checkpoint": (
        ["-m", "trainer.robustness", "--config", "configs/tiny_synthetic.yaml", "--checkpoint", MISSING_CKPT],
        f"error: checkpoint not found: {MISSING_CKPT}",
    ),
    "export: checkpoint": (
        ["-m", "export", "onnx", "--checkpoint", MISSING_CKPT, "--out", "/nonexistent/x.onnx"],
        f"error: checkpoint not found: {MISSING_CKPT}",
    ),
    "edge.run: config": (
        ["-m", "edge.run", "--cameras", "nowhere.yaml"],
        f"error: {REPO / 'nowhere.yaml'}: config file not found",
    ),
    "edge.evaluate: ground truth": (
        ["-m", "edge.evaluate", "--gt", "/nonexistent/gt", "--pred", "/nonexistent/pred"],
        "error: ",
    ),
    "sim: scene": (
        ["-m", "sim", "mot", "--scene", "nosuch", "--out", "/nonexistent/w"],
        "error: unknown synthetic scene 'nosuch'; known: demo, tiny, train",
    ),
    "bench_reid: checkpoint": (
        ["scripts/bench_reid.py", "--checkpoint", MISSING_CKPT],
        f"error: checkpoint not found: {MISSING_CKPT}",
    ),
    "bench_pipeline: config": (
        ["scripts/bench_pipeline.py", "--config", "nowhere.yaml"],
        f"error: {REPO / 'nowhere.yaml'}: config file not found",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_cli_error_is_one_line_and_exit_code_2(case):
    args, message = CASES[case]
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(message), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


# a module the install lacks, simulated by hiding it from importlib before the entry point runs
HIDE = (
    "import importlib.util as u, runpy, sys; real = u.find_spec; "
    "u.find_spec = lambda name, *a: None if name == {hidden!r} else real(name, *a); "
    "sys.argv = {argv!r}; runpy.run_module({module!r}, run_name='__main__')"
)
MISSING_EXTRA = {
    "edge.run without [edge]": (
        "trackers",
        "edge.run",
        ["edge.run", "--cameras", "configs/cams.demo.yaml"],
        "error: the edge runtime needs trackers, which this install lacks: pip install 'clipreid-edge[edge]'",
    ),
    "edge.run, .pt detector, without [ultralytics]": (
        "ultralytics",
        "edge.run",
        ["edge.run", "--cameras", "configs/cams.demo.yaml", "detector.weights=edge/demo_models/detector.pt"],
        "error: the edge runtime needs ultralytics, which this install lacks: pip install 'clipreid-edge[ultralytics]'",
    ),
    "edge.run, botsort, without [ultralytics]": (
        "lap",
        "edge.run",
        ["edge.run", "--cameras", "configs/cams.demo.yaml", "tracker.kind=botsort"],
        "error: the edge runtime needs lap, which this install lacks: pip install 'clipreid-edge[ultralytics]'",
    ),
    "edge.run torch backend without [train]": (
        "open_clip",
        "edge.run",
        ["edge.run", "--cameras", "configs/cams.demo.yaml", "reid.backend=torch"],
        "error: the edge runtime needs open_clip, which this install lacks: pip install 'clipreid-edge[train]'",
    ),
    "edge.hub without [site]": (
        "faiss",
        "edge.hub",
        ["edge.hub", "--config", "configs/site.demo/hub.yaml"],
        "error: the site hub needs faiss, which this install lacks: pip install 'clipreid-edge[site]'",
    ),
    "train without [train]": (
        "torch",
        "trainer.train",
        ["trainer.train", "--config", "configs/tiny_synthetic.yaml"],
        "error: training needs torch, which this install lacks: pip install 'clipreid-edge[train]'",
    ),
    "export without [train]": (
        "onnx",
        "export",
        ["export", "onnx", "--checkpoint", MISSING_CKPT, "--out", "/nonexistent/x.onnx"],
        "error: export onnx needs onnx, which this install lacks: pip install 'clipreid-edge[train]'",
    ),
}


@pytest.mark.parametrize("case", MISSING_EXTRA)
def test_a_missing_extra_is_named_in_one_line(case):
    """The package is split into [edge] and [train]: an entry point used from the other half's
    install says which extra to install instead of an ImportError traceback."""
    hidden, module, argv, message = MISSING_EXTRA[case]
    code = HIDE.format(hidden=hidden, argv=argv, module=module)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [message], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
