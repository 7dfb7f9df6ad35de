"""The TensorRT backend: an engine built by ``python -m export trt``, its metadata in the
sidecar ``<engine>.json`` (:mod:`core.model_card`), run by :class:`core.tensorrt_runner.EngineRunner`."""

from __future__ import annotations

import numpy as np

from edge.reid.base import ReIDBackend, ReIDBackendError


class TensorRTBackend(ReIDBackend):
    """A TensorRT engine; its batch is capped by the engine's optimisation profile."""

    name = "tensorrt"

    def __init__(self, path: str, max_batch: int = 16):
        from core.tensorrt_runner import EngineRunner

        self.runner = EngineRunner(path)
        if self.runner.metadata is None:
            raise ReIDBackendError(
                f"{path}: no metadata sidecar {path}.json next to the engine (written by python -m export trt)"
            )
        self.meta = self.runner.metadata
        self.max_batch = min(max_batch, int(self.runner.batch_range[1]))

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.runner(inputs)
