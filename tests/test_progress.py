"""Progress output: a live bar on a terminal, a readable line every few seconds elsewhere."""

import io
import logging
import subprocess
import sys

from conftest import REPO
from tqdm import tqdm

from core.progress import LogProgress, progress


def test_not_a_terminal_logs_a_line_at_most_every_interval(monkeypatch, caplog):
    now = [0.0]
    monkeypatch.setattr("core.progress.time.monotonic", lambda: now[0])
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = progress(range(95), "stage 2 epoch 1/3", interval=10.0)
    assert isinstance(bar, LogProgress)
    with caplog.at_level(logging.INFO, logger="core.progress"):
        for i in bar:
            now[0] += 1.0  # one second per item
            bar.set_postfix(loss=f"{1 - i / 100:.2f}")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10  # every 10 s, and one at the end
    assert lines[4] == "stage 2 epoch 1/3: 50/95 (53%) in 50 s loss 0.51"
    assert lines[-1] == "stage 2 epoch 1/3: 95/95 (100%) in 95 s loss 0.06"
    assert sys.stderr.getvalue() == ""  # no carriage-return fragments


def test_a_short_loop_off_a_terminal_prints_nothing(monkeypatch, caplog):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with caplog.at_level(logging.INFO, logger="core.progress"):
        assert list(progress(range(5), "features")) == list(range(5))
    assert caplog.records == [] and sys.stderr.getvalue() == ""


def test_a_line_without_postfix_ends_with_the_time(monkeypatch, caplog):
    now = [0.0]
    monkeypatch.setattr("core.progress.time.monotonic", lambda: now[0])
    with caplog.at_level(logging.INFO, logger="core.progress"):
        for _ in LogProgress(range(2), "features", None, interval=1.0):
            now[0] += 1.0
    assert [r.getMessage() for r in caplog.records] == ["features: 1/2 (50%) in 1 s", "features: 2/2 (100%) in 2 s"]


def test_a_terminal_gets_the_live_bar(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress(range(3), "features", enabled=True, file=io.StringIO())
    assert isinstance(bar, tqdm) and list(bar) == [0, 1, 2]


def test_a_cli_writing_to_a_pipe_prints_no_bar_fragments(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sim", "mot", "--scene", "tiny", "--frames", "40", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr
