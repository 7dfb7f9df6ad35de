"""``python -m edge.hub --config hub.yaml``: the hub's configuration.

Its ``matching`` and ``publisher`` sections are the camera file's (``MatchingConfig`` of
:mod:`edge.runtime.config`, ``PublisherConfig`` of :mod:`edge.wire.config`), so one site matches
as one process would. Relative paths are resolved against the YAML's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field

from core.configio import ConfigError, StrictModel, load_config
from edge.identity.config import MatchingConfig
from edge.site.config import resolve_curve, resolve_file
from edge.wire.config import PublisherConfig
from edge.wire.curve import CurveServer


class HubConfig(StrictModel):
    """``python -m edge.hub --config hub.yaml``."""

    bind: str = Field("tcp://127.0.0.1:5600", description="ROUTER endpoint the nodes connect to")
    curve: Optional[CurveServer] = Field(None, description="CURVE for the nodes' endpoint")
    insecure: bool = Field(False, description="allow a non-local bind without CURVE")
    reid_model: str = Field(description="the site's ReID model (ONNX): its id, embedding size and matching threshold")
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    publisher: PublisherConfig = Field(default_factory=lambda: PublisherConfig(endpoint="tcp://127.0.0.1:5610"))
    store: Optional[str] = Field(
        "hub.sqlite", description="SQLite file identities and galleries persist to (None: memory only)"
    )
    heartbeat_s: float = Field(1.0, gt=0, description="period of heartbeats to the nodes")
    node_timeout_s: float = Field(5.0, gt=0, description="no word from a node this long: a gap, reported in stats")
    stats_interval_s: float = Field(5.0, gt=0, description="period of the stats log line and event")
    lockstep: list[str] = Field(
        default_factory=list,
        description="file/synthetic sites: wait for these nodes' step at each scene time "
        "(same decisions as one process)",
    )
    absent_after_s: float = Field(
        900.0,
        ge=0,
        description="lockstep: a listed node never connected while the others' steps wait for it this long is "
        "said absent, and they go on without it until it connects (0: wait for it for good)",
    )
    gallery_k: int = Field(
        64, ge=1, description="identities the FAISS gallery proposes per tracklet (plus the active ones)"
    )
    gallery_exact_below: int = Field(
        2000,
        ge=1,
        description="below this many identities, every identity is a candidate (exactly the single-process engine)",
    )
    gallery_approximate_above: int = Field(
        50000, ge=1, description="past this many identities, an approximate (IVF) index instead of exact inner product"
    )


def load_hub_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> HubConfig:
    path = Path(path)
    cfg = load_config(HubConfig, path, overrides)
    base = path.resolve().parent
    cfg.reid_model = resolve_file(base, cfg.reid_model)
    if not Path(cfg.reid_model).exists():
        raise ConfigError(f"{path}: reid_model: file not found: {cfg.reid_model}")
    resolve_curve(cfg.curve, base, f"{path}: curve")
    resolve_curve(cfg.publisher.curve, base, f"{path}: publisher")
    if cfg.store is not None and cfg.store != ":memory:":
        cfg.store = resolve_file(base, cfg.store)
    return cfg
