"""Optional dependencies: which install extra brings what, and one line when one is missing.

The package is split so an edge box does not carry the training stack (``[edge]`` vs ``[train]``,
see pyproject.toml). An entry point that needs the other half says so in one sentence naming the
extra, instead of an ImportError traceback from deep inside.
"""

from __future__ import annotations

import importlib.util

# what each entry point needs, as (importable module, extra that installs it)
EDGE_RUNTIME = (("onnxruntime", "edge"), ("zmq", "edge"))
TRACKING = (("trackers", "edge"),)
# Ultralytics on the edge: its detector backend (.pt, its engines) and its trackers (BoT-SORT)
ULTRALYTICS = (("ultralytics", "ultralytics"), ("lap", "ultralytics"))
TRAINING = (("torch", "train"), ("open_clip", "train"), ("safetensors", "train"))
EXPORT = TRAINING + (("onnx", "train"), ("onnxruntime", "train"))
DETECTOR_EXPORT = (("ultralytics", "train"),)
ENGINE_BUILD = (("tensorrt", "trt"), ("onnxruntime", "edge"))
# detector weights whose runtime is not in [edge] (Ultralytics would pip-install it at run time)
DETECTOR_FORMATS = {"openvino": (("openvino", "openvino"),), "engine": (("tensorrt", "trt"),)}


class MissingExtra(RuntimeError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(purpose: str, modules: tuple[tuple[str, str], ...]) -> None:
    """Raise :class:`MissingExtra` naming every missing module and the extras that bring them."""
    missing = [(m, extra) for m, extra in modules if importlib.util.find_spec(m) is None]
    if missing:
        names = ", ".join(m for m, _ in missing)
        extras = ",".join(sorted({extra for _, extra in missing}))
        raise MissingExtra(f"{purpose} needs {names}, which this install lacks: pip install 'clipreid-edge[{extras}]'")
