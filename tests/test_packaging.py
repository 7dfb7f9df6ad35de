"""What a fresh install needs is declared: every third-party module the tests and the product
import comes from a distribution named in pyproject.toml, and [dev] tools are found."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, dev_tool

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

PACKAGES = [
    p.rstrip("*")
    for p in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
]
LOCAL = {"conftest", "scripts", *PACKAGES}
# imported only behind an optional backend or a GPU; the extra that brings it is named here
OPTIONAL = {"tensorrt": "trt", "pycuda": "trt", "openvino": "openvino", "tomli": "pytest's own (Python 3.10)"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def declared(extras: tuple[str, ...] = ("dev", "openvino", "site", "view")) -> set[str]:  # what CI installs (.ci/run)
    """What ``pip install ".[<extras>]"`` declares, following the project's own extras
    (``clipreid-edge[all]`` inside ``dev``) the way pip does."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in project["optional-dependencies"][extra]:
            if _name(req) == project["name"]:
                todo += re.search(r"\[([a-z,]+)\]", req).group(1).split(",")
            else:
                names.add(_name(req))
    return names


def imported_modules(files: list[Path]) -> set[str]:
    out: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split(".")[0])
    local = LOCAL | {p.stem for p in files}  # e.g. one test module reusing another's helpers
    return out - set(sys.stdlib_module_names) - local - {"__future__"}


def test_every_third_party_import_of_tests_and_product_is_declared():
    files = [
        *REPO.glob("tests/*.py"),
        *(f for package in PACKAGES for f in REPO.glob(f"{package}/**/*.py")),
        *REPO.glob("scripts/*.py"),
    ]
    owners = importlib.metadata.packages_distributions()
    names = declared()
    undeclared = {}
    for module in sorted(imported_modules(files)):
        if module in OPTIONAL:
            continue
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        if not dists & names:
            undeclared[module] = sorted(dists) or "not installed"
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_ci_installs_and_tests_exactly_as_the_readme_says():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    tests = re.search(r'"\$venv/bin/python" -m pip install --quiet (-e "\.\[[a-z,]+\]")', ci).group(1)
    assert f"pip install {tests} && python -m pytest -q" in readme
    # README's first command, in a venv of its own: the runtime alone, and the demo runs
    edge = re.search(r'\.venv-edge/bin/python -m pip install --quiet (-e "\.\[[a-z,]+\]")', ci).group(1)
    assert f"pip install {edge} && python -m edge.run --cameras configs/cams.demo.yaml" in readme
    assert ".venv-edge/bin/python scripts/check_edge_install.py" in ci
    assert "-m venv" in ci and 'exec "$venv/bin/python" -m pytest -q' in ci


def test_dev_tools_are_found_next_to_the_interpreter_without_path(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert Path(dev_tool("shellcheck")).parent == Path(sys.executable).parent


def test_a_missing_dev_tool_fails_instead_of_skipping():
    with pytest.raises(pytest.fail.Exception, match="no-such-linter not found next to"):
        dev_tool("no-such-linter")


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize(
    "path,ignored",
    [
        ("model.onnx", True),
        ("model.engine", True),
        ("model.engine.json", True),
        ("runs/x/model.pt", True),
        (".venv-ci/bin/python", True),
        ("edge/demo_models/reid.onnx", False),
        ("edge/demo_models/detector.pt", False),
        ("edge/demo_models/detector.onnx", False),
    ],
)
def test_exported_artefacts_in_the_repo_root_are_ignored_but_demo_models_are_not(path, ignored):
    proc = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO)
    assert proc.returncode == (0 if ignored else 1)


def test_the_edge_install_carries_no_training_stack():
    """``.[edge]`` (and the Jetson's ``.[trt]`` on top of it) is the runtime only; ``.[all]`` is both halves."""
    edge, trt, train, everything = declared(("edge",)), declared(("trt",)), declared(("train",)), declared(("all",))
    ultralytics = declared(("ultralytics",))
    assert {"onnxruntime", "trackers", "pyzmq", "opencv-python"} <= edge
    assert not {"torch", "torchvision", "ultralytics", "opencv-python-headless", "lap"} & edge
    assert not {"open-clip-torch", "onnx", "trackeval", "safetensors", "timm"} & edge
    assert edge <= trt and not {"torch", "ultralytics", "open-clip-torch", "onnx", "trackeval"} & trt
    assert {"ultralytics", "lap"} <= ultralytics and edge <= ultralytics
    assert edge | train | ultralytics == everything
