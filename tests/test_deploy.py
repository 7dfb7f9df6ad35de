"""Deployment files pass their linters (no Jetson needed): shellcheck, hadolint, systemd-analyze."""

import shutil
import subprocess

import pytest
from conftest import REPO, dev_tool

JETSON = REPO / "deploy" / "jetson"


def run_tool(*cmd):
    """A system tool that ``[dev]`` does not install (systemd-analyze): skipped where absent."""
    if shutil.which(cmd[0]) is None:
        pytest.skip(f"{cmd[0]} is not installed")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def run_dev_tool(name, *args):
    """A tool the ``[dev]`` extra installs: missing is a failure, not a skip."""
    return subprocess.run([dev_tool(name), *args], capture_output=True, text=True, timeout=120)


def test_scripts_pass_shellcheck():
    scripts = sorted(str(p) for p in JETSON.glob("*.sh"))
    assert scripts
    proc = run_dev_tool("shellcheck", *scripts)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_passes_hadolint():
    proc = run_dev_tool("hadolint", str(JETSON / "Dockerfile"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_systemd_unit_verifies():
    proc = run_tool("systemd-analyze", "verify", str(JETSON / "clipreid-edge.service"))
    assert proc.returncode == 0 and "Unknown" not in proc.stderr, proc.stderr
