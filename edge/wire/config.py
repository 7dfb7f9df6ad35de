"""The ``publisher:`` section of a camera file (and of the site hub's file): where and how events go out.

It lives with the publisher that reads it (:mod:`edge.wire.publisher`), below both the runtime and
the site hub, whose config files each have such a section (:mod:`edge.runtime.config`,
:mod:`edge.site.hub_config`).
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from core.configio import StrictModel
from edge.wire.curve import CurveServer
from edge.wire.publisher import HIGH_WATER_MARK


class PublisherConfig(StrictModel):
    enabled: bool = True
    endpoint: str = Field("tcp://127.0.0.1:5555", description="ZeroMQ PUB bind address")
    high_water_mark: int = Field(
        HIGH_WATER_MARK, ge=1, description="messages queued per subscriber before the oldest are dropped"
    )
    update_interval_s: float = Field(1.0, ge=0, description="rate limit of 'update' events per track")
    snapshot_interval_s: float = Field(5.0, gt=0, description="period of the identities snapshot for late subscribers")
    send_embeddings: bool = Field(False, description="add the identity embedding as a float16 frame to identity events")
    curve: Optional[CurveServer] = Field(
        None, description="CURVE keys and subscriber allow-list (required to bind beyond localhost)"
    )
    insecure: bool = Field(False, description="allow binding beyond localhost without CURVE (events in clear text)")
    preview_fps: float = Field(
        0.0, ge=0, le=30, description="frame/<camera> preview JPEGs per second per camera for edge.view (0: off)"
    )
    preview_width: int = Field(320, ge=32, le=1920, description="preview width in pixels (never upscaled)")
    preview_quality: int = Field(70, ge=10, le=95, description="preview JPEG quality")
    crops: bool = Field(
        False, description="attach a JPEG crop of the tracklet to identity new/assigned events (for edge.view)"
    )
    crop_height: int = Field(128, ge=16, le=512, description="crop height in pixels (never upscaled)")
    crop_max_bytes: int = Field(
        16000, ge=1000, le=200000, description="a crop is re-encoded smaller until it fits, else left out"
    )
