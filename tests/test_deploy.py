"""Deployment files pass their linters (no Jetson needed): shellcheck, hadolint, systemd-analyze."""
import shutil
import subprocess

import pytest

from conftest import REPO

JETSON = REPO / "deploy" / "jetson"


def run_tool(*cmd):
    if shutil.which(cmd[0]) is None:
        pytest.skip(f"{cmd[0]} is not installed")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_scripts_pass_shellcheck():
    scripts = sorted(str(p) for p in JETSON.glob("*.sh"))
    assert scripts
    proc = run_tool("shellcheck", *scripts)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_passes_hadolint():
    proc = run_tool("hadolint", str(JETSON / "Dockerfile"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_systemd_unit_verifies():
    proc = run_tool("systemd-analyze", "verify", str(JETSON / "clipreid-edge.service"))
    assert proc.returncode == 0 and "Unknown" not in proc.stderr, proc.stderr
