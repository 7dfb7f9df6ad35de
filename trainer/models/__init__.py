"""Models: CLIP backbones adapted to ReID, prompt learning, checkpoints."""

from trainer.models.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint, save_checkpoint
from trainer.models.clip_factory import PretrainedWeightsError, build_clip
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
