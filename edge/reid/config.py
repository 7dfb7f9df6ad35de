"""The ``reid:`` section of the camera file: which ReID model runs, how, and when a crop is embedded.

It lives with the backends that read it (:mod:`edge.reid`), below the runtime that assembles the
whole camera file (:mod:`edge.runtime.config`); the embedding budget's rule is
:class:`edge.runtime.tracklets.BudgetPolicy`, which takes its values (and defaults) from here.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field, field_validator

from core.configio import StrictModel


class NormalizationConfig(StrictModel):
    """For third-party ONNX models without our metadata (our exports carry their own)."""

    scale: float = Field(255.0, gt=0, description="pixel values are divided by this first")
    mean: Optional[tuple[float, float, float]] = Field(None, description="then (x - mean) / std, per RGB channel")
    std: Optional[tuple[float, float, float]] = None
    color_order: Literal["RGB", "BGR"] = "RGB"


class ReIDConfig(StrictModel):
    backend: Literal["onnxruntime", "torch", "tensorrt"] = "onnxruntime"
    model: str = Field(description="ONNX file, checkpoint .pt (torch) or engine (tensorrt)")
    device: str = Field("cpu", description="torch backend / onnxruntime provider choice: cpu or cuda")
    batch_size: int = Field(16, ge=1, le=512, description="largest batch per call; bigger batches are split")
    input_size: Optional[tuple[int, int]] = Field(
        None, description="[height, width] for third-party models with a dynamic input"
    )
    normalization: NormalizationConfig = Field(default_factory=NormalizationConfig)
    embed_every_s: float = Field(
        1.0,
        gt=0,
        description="re-embed a track at most every this many seconds of media time "
        "(the same budget at any processed rate)",
    )
    embed_every: Optional[int] = Field(
        None, ge=1, description="older form: every N frames at the camera's rate (converted to embed_every_s)"
    )
    better_crop: float = Field(
        1.25, ge=1.0, description="re-embed early when crop quality beats the last one by this factor"
    )
    min_box_height: int = Field(24, ge=1, description="crops smaller than this are not embedded")
    max_overlap: float = Field(
        0.6, ge=0.0, le=1.0, description="crops covered more than this by other boxes are not embedded"
    )
    swap_below: Union[float, bool, None] = Field(
        None,
        description="cut a track whose new crops look like someone else: cosine to its tracklet's mean below this "
        "twice in a row (null: the model's stored value, off without one; false: off)",
    )

    @field_validator("swap_below", mode="before")
    @classmethod
    def _cosine_null_or_false(cls, value):
        if value is None or value is False:
            return value
        try:
            cosine = float(value)
        except (TypeError, ValueError):
            cosine = None
        if value is True or cosine is None or not -1.0 <= cosine <= 1.0:
            raise ValueError(f"{value!r}: a cosine in [-1, 1], null (the model's value) or false (off)")
        return cosine
