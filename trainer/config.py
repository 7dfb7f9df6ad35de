"""The training recipe: typed, validated sections with a default and a description per field.

A recipe YAML maps one-to-one onto :class:`TrainConfig`; see ``configs/`` for examples and
``core.configio`` for ``_BASE_`` inheritance and ``KEY=VALUE`` overrides.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from core.configio import StrictModel, load_config
from trainer.methods.registry import BaselineConfig, MethodConfig, parse_method_config

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class BackboneConfig(StrictModel):
    name: str = Field("ViT-B-16", description="open_clip architecture name or a bundled config (tiny-vit, tiny-rn)")
    pretrained: Optional[Path] = Field(
        None, description="local CLIP weights: OpenAI TorchScript archive or open_clip state dict"
    )
    quick_gelu: bool = Field(False, description="QuickGELU activations; true for OpenAI weights")


class SIEConfig(StrictModel):
    enabled: bool = Field(False, description="add a learnable per-camera embedding (side information)")
    coefficient: float = Field(3.0, ge=0, description="scale of the camera embedding")
    mode: Literal["cls", "all"] = Field(
        "cls", description="cls: CLIP-ReID (class token only); all: TransReID (every token)"
    )


class ModelConfig(StrictModel):
    backbone: BackboneConfig = BackboneConfig()
    image_size: tuple[int, int] = Field((256, 128), description="input height, width")
    patch_stride: Optional[int] = Field(
        None, ge=1, description="ViT patch stride; None = patch size, 12 = overlapping patches"
    )
    last_stride: int = Field(
        1, ge=1, le=2, description="ResNet stage-4 stride (1 doubles the final map, as in CLIP-ReID)"
    )
    sie: SIEConfig = SIEConfig()
    n_ctx: int = Field(4, ge=1, le=16, description="learnable context tokens per identity")
    prompt_template: str = Field(
        "A photo of a {ctx} person.", description="prompt text; {ctx} is replaced by the learnable tokens"
    )
    intermediate_layers: list[int] = Field(
        default_factory=list, description="ViT blocks / ResNet stages whose tokens the forward returns"
    )
    method: SerializeAsAny[MethodConfig] = Field(
        default_factory=BaselineConfig,
        description="name: a registered method (trainer.methods); its section under its name",
    )

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: object) -> object:
        return parse_method_config(value)  # the config class of the method ``name`` names


class AugmentConfig(StrictModel):
    flip_prob: float = Field(0.5, ge=0, le=1, description="horizontal flip probability")
    padding: int = Field(10, ge=0, description="pixels padded before the random crop")
    erasing_prob: float = Field(0.5, ge=0, le=1, description="random erasing probability")


class SyntheticDataConfig(StrictModel):
    """Used when ``data.dataset == 'synthetic'``: the dataset is generated into ``data.root`` if missing."""

    num_train_ids: int = Field(40, ge=2)
    num_test_ids: int = Field(30, ge=2)
    num_cameras: int = Field(4, ge=2)
    images_per_id_per_camera: int = Field(3, ge=1)
    height: int = Field(128, ge=32)
    width: int = Field(64, ge=16)
    occlusion_prob: float = Field(0.2, ge=0, le=1)
    seed: int = 0


class DataConfig(StrictModel):
    dataset: str = Field(
        "market1501", description="market1501, dukemtmc, msmt17, occluded_duke, occluded_reid, p_dukemtmc or synthetic"
    )
    root: Path = Field(Path("data"), description="folder that holds the dataset folder (or the dataset itself)")
    num_instances: int = Field(4, ge=1, description="K: images per identity in a PK batch")
    workers: int = Field(2, ge=0, description="data-loader worker processes")
    skip_bad_images: bool = Field(
        False, description="leave out images whose header cannot be read (default: refuse to start, listing them)"
    )
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    augment: AugmentConfig = AugmentConfig()
    synthetic: SyntheticDataConfig = SyntheticDataConfig()
    val_ids: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of training identities held out as a validation query/gallery (trainer.data.validation): "
        "tune hyper-parameters and the matching threshold there, never on test; 0: none",
    )
    val_seed: int = Field(0, description="which training identities the validation split draws")


class OptimConfig(StrictModel):
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(3.5e-4, gt=0)
    weight_decay: float = Field(
        1e-4, ge=0, description="L2 weight decay of weights and norms (official CLIP-ReID decays every parameter)"
    )
    weight_decay_bias: Optional[float] = Field(
        None, ge=0, description="weight decay of biases; None: weight_decay, as the official WEIGHT_DECAY_BIAS"
    )
    bias_lr_factor: float = Field(2.0, gt=0, description="learning-rate multiplier for biases")
    momentum: float = Field(0.9, ge=0, description="SGD only")
    epochs: int = Field(60, ge=0)
    batch_size: int = Field(64, ge=2)
    scheduler: Literal["cosine", "step"] = "cosine"
    warmup_epochs: int = Field(5, ge=0)
    warmup_factor: float = Field(0.01, gt=0, le=1, description="lr multiplier at the start of warm-up")
    milestones: list[int] = Field(default_factory=lambda: [30, 50], description="step scheduler epochs")
    gamma: float = Field(0.1, gt=0, le=1)
    min_lr: float = Field(1e-6, ge=0, description="cosine floor")
    grad_clip: Optional[float] = Field(None, gt=0, description="max gradient norm; None disables")

    def bias_weight_decay(self) -> float:
        return self.weight_decay if self.weight_decay_bias is None else self.weight_decay_bias


class Stage1Config(OptimConfig):
    """Prompt learning: both encoders frozen, only the identity tokens train."""

    epochs: int = 120
    lr: float = 3.5e-4
    batch_size: int = 64
    warmup_epochs: int = 5


class Stage2Config(OptimConfig):
    """Image-encoder fine-tuning against the frozen stage-1 text features."""

    lr: float = 5e-6
    scheduler: Literal["cosine", "step"] = "step"
    warmup_epochs: int = 10
    warmup_factor: float = 0.1
    id_weight: float = Field(0.25, ge=0)
    triplet_weight: float = Field(1.0, ge=0)
    i2t_weight: float = Field(1.0, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    margin: float = Field(0.3, ge=0, description="triplet margin")
    triplet_space: Literal["centered", "raw"] = Field(
        "centered",
        description="features the triplet compares: batch-centered and L2-normalised (centered; raw features "
        "collapse, see trainer.losses) or raw (the official code)",
    )


class EvalConfig(StrictModel):
    flip: bool = Field(False, description="average features of the image and its mirror")
    distance: Literal["cosine", "euclidean"] = "cosine"
    rerank: bool = Field(False, description="k-reciprocal re-ranking")
    use_parts: bool = Field(
        True,
        description="part-based methods: confidence-weighted part similarity next to the global one (false: global "
        "only)",
    )
    k1: int = Field(20, ge=1)
    k2: int = Field(6, ge=1)
    lambda_value: float = Field(0.3, ge=0, le=1)
    max_rank: int = Field(50, ge=1)
    batch_size: int = Field(128, ge=1)
    false_match_rate: float = Field(
        0.01, gt=0, lt=1, description="the stored matching threshold admits this share of different-person pairs"
    )


class TrainConfig(StrictModel):
    seed: int = 1
    output_dir: Path = Field(Path("runs/default"), description="checkpoints, logs and reports go here")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
    checkpoint_every: int = Field(10, ge=1, description="save a resumable checkpoint every N epochs")
    eval_every: int = Field(0, ge=0, description="evaluate every N stage-2 epochs (0: only at the end)")
    eval_initial: bool = Field(
        False, description="also evaluate the untrained model first, to show what training bought"
    )
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    stage1: Stage1Config = Stage1Config()
    stage2: Stage2Config = Stage2Config()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _check_batch(self) -> TrainConfig:
        k = self.data.num_instances
        if self.stage2.batch_size % k:
            raise ValueError(
                f"stage2.batch_size ({self.stage2.batch_size}) must be a multiple of data.num_instances ({k})"
            )
        needs = type(self.model.method).requires_backbone
        needs_resnet, needs_vit = needs == "resnet", needs == "vit"
        is_resnet = self.model.backbone.name.upper().startswith("RN") or self.model.backbone.name.endswith("-rn")
        if (needs_resnet and not is_resnet) or (needs_vit and is_resnet):
            kind = "a ResNet (RN50)" if needs_resnet else "a ViT"
            raise ValueError(
                f"model.method.name={self.model.method.name} needs {kind} backbone, got {self.model.backbone.name}"
            )
        return self


def load_train_config(path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    return load_config(TrainConfig, path, overrides)
