"""Every command-line tool turns its user's mistakes (a missing checkpoint, dataset or config, an
unknown scene) into one ``error: ...`` line and exit code 2, without a traceback."""
import subprocess
import sys

import pytest

from conftest import REPO

MISSING_CKPT = "/nonexistent/model.pt"
CASES = {
    "train: config": (["-m", "trainer.train", "--config", "nowhere.yaml"], f"error: {REPO / 'nowhere.yaml'}: config file not found"),
    "train: dataset": (["-m", "trainer.train", "--config", "configs/tiny_synthetic.yaml", "data.dataset=market1501", "data.root=/nonexistent"],
                       "error: dataset root /nonexistent does not exist"),
    "eval: checkpoint": (["-m", "trainer.eval", "--config", "configs/tiny_synthetic.yaml", "--checkpoint", MISSING_CKPT],
                         f"error: checkpoint not found: {MISSING_CKPT}"),
    "robustness: checkpoint": (["-m", "trainer.robustness", "--config", "configs/tiny_synthetic.yaml", "--checkpoint", MISSING_CKPT],
                               f"error: checkpoint not found: {MISSING_CKPT}"),
    "export: checkpoint": (["-m", "export", "onnx", "--checkpoint", MISSING_CKPT, "--out", "/nonexistent/x.onnx"],
                           f"error: checkpoint not found: {MISSING_CKPT}"),
    "edge.run: config": (["-m", "edge.run", "--cameras", "nowhere.yaml"], f"error: {REPO / 'nowhere.yaml'}: config file not found"),
    "edge.evaluate: ground truth": (["-m", "edge.evaluate", "--gt", "/nonexistent/gt", "--pred", "/nonexistent/pred"], "error: "),
    "edge.world: scene": (["-m", "edge.world", "mot", "--scene", "nosuch", "--out", "/nonexistent/w"],
                          "error: unknown synthetic scene 'nosuch'; known: demo, tiny, train"),
    "bench_reid: checkpoint": (["scripts/bench_reid.py", "--checkpoint", MISSING_CKPT], f"error: checkpoint not found: {MISSING_CKPT}"),
    "bench_pipeline: config": (["scripts/bench_pipeline.py", "--config", "nowhere.yaml"], f"error: {REPO / 'nowhere.yaml'}: config file not found"),
}


@pytest.mark.parametrize("case", CASES)
def test_cli_error_is_one_line_and_exit_code_2(case):
    args, message = CASES[case]
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(message), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
