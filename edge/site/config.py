"""Site configuration of a node: the ``site:`` section of its camera file.

It imports nothing of the camera file's own model (:mod:`edge.runtime.config`, which holds this
section); the hub's YAML, which reuses the runtime's matching and publisher sections, is
:mod:`edge.site.hub_config`. Relative paths are resolved against the file that names them (as in
the camera file).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Optional, Union

from pydantic import Field, model_validator

from core.configio import ConfigError, StrictModel
from edge.wire.curve import CurveClient, CurveServer, is_local

LOCAL_ID_STRIDE = 1_000_000_000  # provisional ids: 10^9 .. 10^12, hub ids count from 1


def local_id_base(node: str, local_ids_from: Optional[int] = None) -> int:
    """Where a node's provisional ids start: far above any id a hub counts to (10^9), and per node
    name (crc32), so two nodes deciding on their own meanwhile rarely share a range."""
    if local_ids_from is not None:
        return local_ids_from
    return LOCAL_ID_STRIDE * (1 + zlib.crc32(node.encode()) % 1000)


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
        return local_id_base(self.node, self.local_ids_from)

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


def resolve_file(base: Path, value: str) -> str:
    """A path from a config file, made absolute against ``base`` (the file's folder)."""
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def resolve_curve(curve: Union[CurveClient, CurveServer, None], base: Path, where: str) -> None:
    """Paths of a CURVE section resolved against ``base``; every file must exist."""
    if curve is None:
        return
    for name in type(curve).model_fields:
        value = resolve_file(base, getattr(curve, name))
        if not Path(value).exists():
            raise ConfigError(f"{where}.curve.{name}: not found: {value}")
        setattr(curve, name, value)
