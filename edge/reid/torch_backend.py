"""The torch backend: runs a training checkpoint (``.pt``) on the edge, through the same graph
``export`` traces (uint8 in, L2-normalised out), so a model can be tried before it is exported.

This is the one declared place where the edge imports the model-making half (``trainer`` to load
the checkpoint, ``export`` for the traced graph and its metadata); the imports sit inside the
constructor so an edge install without torch never loads them, and the layer contract in
``pyproject.toml`` names this exception.
"""

from __future__ import annotations

import numpy as np

from edge.reid.base import ReIDBackend


class TorchBackend(ReIDBackend):
    """A training checkpoint run through the graph export traces (uint8 in, L2 out)."""

    name = "torch"

    def __init__(self, path: str, device: str = "cpu", max_batch: int = 16):
        import torch

        from export.onnx_export import build_graph, metadata_for
        from trainer.models.checkpoint import load_checkpoint

        self.torch = torch
        self.device = torch.device(device if device != "cuda" or torch.cuda.is_available() else "cpu")
        loaded = load_checkpoint(path)
        self.graph = build_graph(loaded).to(self.device).eval()
        self.meta = metadata_for(loaded, self.graph, "fp32", path)
        self.max_batch = max_batch

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            images = torch.from_numpy(inputs[self.meta.input_name]).to(self.device)
            cam = inputs.get(self.meta.camera_input) if self.meta.camera_input else None
            cam = torch.from_numpy(cam).to(self.device) if cam is not None else None
            result = self.graph(images, cam)
            return [t.float().cpu().numpy() for t in (result if isinstance(result, tuple) else (result,))]
