"""The view's settings: command-line flags, or a YAML file (``--config view.yaml``) with the same
names, flags winning. Who may look is decided here: crops and previews are biometric data, so
the view binds to localhost by default, and on any other address it needs an access token, or
``insecure: true`` (a TLS-terminating proxy that authenticates in front of it, see README).

:class:`Limits` bounds what the view holds (:mod:`edge.view.state`); its defaults are the only
ones: the settings an operator may change take theirs from it, and :meth:`ViewConfig.limits`
hands them over.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pydantic import Field, model_validator

from core.configio import ConfigError, StrictModel, load_config

TOKEN_ENV = "CLIPREID_VIEW_TOKEN"
MB = 1024 * 1024


@dataclass
class Limits:
    """What the view's state holds at most, and when it calls something live or down."""

    max_identities: int = 500
    sightings_per_identity: int = 20
    floor_points: int = 60
    notes_per_identity: int = 8
    max_crops: int = 3000
    max_crop_bytes: int = 32 * MB
    max_cameras: int = 64
    max_pending: int = 2000  # tracklets seen before their identity event, waiting for it
    live_s: float = 10.0  # an identity with an open tracklet touched this recently is live
    stale_s: float = 15.0  # a camera whose previews stopped this long is down; a silent publisher is flagged


class ViewConfig(StrictModel):
    events: str = Field("tcp://127.0.0.1:5555", description="the publisher's endpoint (edge.run's publisher.endpoint)")
    replay: Optional[str] = Field(None, description="serve a recording (edge.listen --record) instead of live events")
    speed: float = Field(1.0, gt=0, le=1000, description="replay speed (2: twice as fast)")
    host: str = Field("127.0.0.1", description="address the page is served on")
    port: int = Field(8080, ge=0, le=65535, description="port (0: any free one, printed at start)")
    token_file: Optional[str] = Field(None, description=f"file holding the access token (else ${TOKEN_ENV})")
    insecure: bool = Field(
        False, description="serve a non-local address without a token (only behind an authenticating proxy)"
    )
    server_key: Optional[str] = Field(
        None, description="CURVE: the publisher's public .key file, or its 40-character Z85 key"
    )
    key_file: Optional[str] = Field(
        None, description="CURVE: this view's secret certificate (zmq.auth.create_certificates)"
    )
    max_identities: int = Field(
        Limits.max_identities,
        ge=1,
        le=100000,
        description="identities held (the longest untouched are forgotten first)",
    )
    sightings_per_identity: int = Field(
        Limits.sightings_per_identity, ge=1, le=1000, description="newest sightings kept per identity"
    )
    max_crop_mb: float = Field(
        Limits.max_crop_bytes / MB, gt=0, le=4096, description="memory for crops (the oldest are dropped first)"
    )
    live_s: float = Field(
        Limits.live_s, gt=0, description="an identity with an open tracklet seen this recently is live"
    )
    stale_s: float = Field(
        Limits.stale_s, gt=0, description="a camera whose previews stopped this long shows 'down since'"
    )

    @model_validator(mode="after")
    def _curve_pair(self) -> ViewConfig:
        if self.key_file and not self.server_key:
            raise ValueError("key_file needs server_key (the publisher's public key)")
        return self

    def limits(self) -> Limits:
        """The state's bounds: these settings, the others at their defaults."""
        return Limits(
            max_identities=self.max_identities,
            sightings_per_identity=self.sightings_per_identity,
            max_crop_bytes=int(self.max_crop_mb * MB),
            live_s=self.live_s,
            stale_s=self.stale_s,
        )

    @property
    def is_local(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def read_token(cfg: ViewConfig) -> Optional[str]:
    """The access token: ``token_file``'s first line, else ``$CLIPREID_VIEW_TOKEN``, else None."""
    if cfg.token_file:
        path = Path(cfg.token_file)
        if not path.is_file():
            raise ConfigError(f"token_file not found: {path}")
        token = path.read_text().strip().splitlines()[0].strip() if path.read_text().strip() else ""
        if len(token) < 16:
            raise ConfigError(
                f"{path}: the access token must be at least 16 characters "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
            )
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token and len(token) < 16:
        raise ConfigError(f"${TOKEN_ENV} must be at least 16 characters")
    return token or None


def check_access(cfg: ViewConfig, token: Optional[str]) -> None:
    """Refuse to serve biometric data on a non-local address without a token or ``insecure``."""
    if not cfg.is_local and token is None and not cfg.insecure:
        raise ConfigError(
            f"refusing to serve {cfg.host}:{cfg.port} without an access token: set ${TOKEN_ENV} or "
            f"token_file, or put an authenticating TLS proxy in front and set insecure: true (README)"
        )


def load_view_config(path: Optional[str], overrides: dict) -> ViewConfig:
    """The YAML file (if any) with the command-line values that were given on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if path is None:
        try:
            return ViewConfig(**given)
        except ValueError as exc:
            raise ConfigError(_one_line(exc)) from None
    cfg = load_config(ViewConfig, path)
    try:
        return ViewConfig(**{**cfg.model_dump(), **given})
    except ValueError as exc:
        raise ConfigError(f"{path}: {_one_line(exc)}") from None


def _one_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        e = errors()[0]
        where = ".".join(str(p) for p in e.get("loc", ())) or "config"
        return f"{where}: {e.get('msg')}"
    return str(exc)
