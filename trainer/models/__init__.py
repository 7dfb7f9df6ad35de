"""The ReID model: :class:`CLIPReID` ties the CLIP parts (:mod:`trainer.clip`: encoders, prompts)
and an occlusion-robust method (:mod:`trainer.methods`) together; checkpoints save and load it.
``build_clip`` and ``PretrainedWeightsError`` are re-exported from :mod:`trainer.clip.factory`."""

from trainer.clip.factory import PretrainedWeightsError, build_clip
from trainer.models.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint, save_checkpoint
from trainer.models.reid import CLIPReID, ReIDOutput, build_model

__all__ = [
    "CLIPReID",
    "ReIDOutput",
    "build_model",
    "build_clip",
    "load_checkpoint",
    "save_checkpoint",
    "LoadedCheckpoint",
    "CheckpointError",
    "PretrainedWeightsError",
]
