"""Site configuration: the ``site:`` section of a node's camera file and the hub's YAML.

Relative paths are resolved against the file that names them (as in the camera file).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Optional

from pydantic import Field, model_validator

from core.configio import ConfigError, StrictModel, load_config
from edge.wire.curve import CurveClient, CurveServer, is_local

LOCAL_ID_STRIDE = 1_000_000_000  # provisional ids: 10^9 .. 10^12, hub ids count from 1


class SiteConfig(StrictModel):
    """``site:`` in a node's camera file: send tracklet summaries to a hub instead of matching locally."""

    node: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="this node's name (unique in the site)")
    hub: str = Field(description="the hub's node endpoint, e.g. tcp://hub.local:5600")
    curve: Optional[CurveClient] = Field(
        None, description="CURVE keys (required unless the hub is local or insecure: true)"
    )
    insecure: bool = Field(False, description="allow a non-local hub without CURVE (clear text biometric data)")
    heartbeat_s: float = Field(1.0, gt=0, description="period of heartbeats to the hub")
    hub_timeout_s: float = Field(
        5.0,
        gt=0,
        description="no word from the hub this long (or no answer at start): it is away "
        "(warn, decide locally, buffer and retry)",
    )
    buffer: int = Field(
        5000, ge=1, description="tracklet summaries kept while the hub is away (the oldest dropped beyond)"
    )
    flush_timeout_s: float = Field(10.0, ge=0, description="at the end, wait this long for the hub's final ids")
    epoch: Optional[float] = Field(
        None, description="scene time of file/synthetic cameras' first frame (one clock for a site of file nodes)"
    )
    local_ids_from: Optional[int] = Field(
        None,
        ge=1,
        le=2**52,
        description="first provisional id the node's own engine gives while the hub "
        "is away (default: from the node's name, see local_id_base)",
    )

    def local_id_base(self) -> int:
        """Where this node's provisional ids start: far above any id a hub counts to (10^9), and
        per node name (crc32), so two nodes deciding on their own meanwhile rarely share a range."""
        if self.local_ids_from is not None:
            return self.local_ids_from
        return LOCAL_ID_STRIDE * (1 + zlib.crc32(self.node.encode()) % 1000)

    @model_validator(mode="after")
    def _encrypted_beyond_localhost(self) -> SiteConfig:
        """Summaries carry appearance embeddings (biometric data): they leave the machine only
        encrypted, towards a hub whose key the node knows, unless the config says otherwise."""
        if self.curve is None and not self.insecure and not is_local(self.hub):
            raise ValueError(
                f"hub {self.hub} is not on this machine: configure site.curve (python -m edge.keys) "
                "or set site.insecure: true explicitly"
            )
        return self


# below SiteConfig: edge.runtime.config imports SiteConfig from here while this module may still be loading
from edge.runtime.config import MatchingConfig, PublisherConfig  # noqa: E402


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
        description="file/synthetic sites: wait for these nodes' step at each scene time (same decisions as one process)",
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


def _resolve(base: Path, value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def resolve_curve(curve, base: Path, where: str) -> None:
    """Paths of a CURVE section resolved against ``base``; every file must exist."""
    if curve is None:
        return
    for name in type(curve).model_fields:
        value = _resolve(base, getattr(curve, name))
        if not Path(value).exists():
            raise ConfigError(f"{where}.curve.{name}: not found: {value}")
        setattr(curve, name, value)


def load_hub_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> HubConfig:
    path = Path(path)
    cfg = load_config(HubConfig, path, overrides)
    base = path.resolve().parent
    cfg.reid_model = _resolve(base, cfg.reid_model)
    if not Path(cfg.reid_model).exists():
        raise ConfigError(f"{path}: reid_model: file not found: {cfg.reid_model}")
    resolve_curve(cfg.curve, base, f"{path}: curve")
    resolve_curve(cfg.publisher.curve, base, f"{path}: publisher")
    if cfg.store not in (None, ":memory:"):
        cfg.store = _resolve(base, cfg.store)
    return cfg
