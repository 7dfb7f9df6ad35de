"""Every command-line tool turns its user's mistakes (a missing checkpoint, dataset or config, an
unknown scene) into one ``error: ...`` line and exit code 2, without a traceback."""

import json
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


# Each case as ``python -m MODULE ...`` (or ``python SCRIPT ...``) runs it, its stderr (file
# descriptor 2) caught in a file, all in one interpreter: they share its imports (PyTorch's alone
# take seconds), not their outcomes. Prints {case: [exit code, stderr]} as JSON.
DRIVER = """
import json, os, runpy, sys, tempfile, traceback
out = {}
for case, args in json.loads(sys.argv[1]).items():
    sys.argv = args[1:] if args[0] == "-m" else list(args)
    with tempfile.TemporaryFile("w+") as err:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(err.fileno(), 2)
        code = 0
        try:
            if args[0] == "-m":
                runpy.run_module(args[1], run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(args[0], run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        os.dup2(saved, 2)
        err.seek(0)
        out[case] = [code, err.read()]
print(json.dumps(out))
"""


OWN_PROCESS = {"edge.run: config"}  # edge.run ends its process with os._exit (its threads never hold it up)


@pytest.fixture(scope="module")
def cli_errors() -> dict:
    shared = {case: args for case, (args, _) in CASES.items() if case not in OWN_PROCESS}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(shared)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    for case in OWN_PROCESS:
        alone = subprocess.run([sys.executable, *CASES[case][0]], cwd=REPO, capture_output=True, text=True, timeout=120)
        out[case] = [alone.returncode, alone.stderr]
    return out


@pytest.mark.parametrize("case", CASES)
def test_cli_error_is_one_line_and_exit_code_2(case, cli_errors):
    code, stderr = cli_errors[case]
    assert code == 2, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(CASES[case][1]), stderr[-2000:]
    assert "Traceback" not in stderr


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
