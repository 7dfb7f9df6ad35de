"""Construction from the camera file: what :class:`~edge.runtime.pipeline.EdgePipeline` is made of
that the config and the model card decide together.

- the identity engine's settings: the threshold and scale from ``matching`` or else the model's
  stored similarity statistics (:func:`engine_settings`);
- the cosine that cuts a swapped track (:func:`swap_below`);
- the identity service (:func:`identity_service`): the box's own :class:`IdentityEngine`, or under
  ``site:`` the node's link to the site hub, which makes its own engine for the time the hub is
  away. Only the one the run uses is built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Optional

from edge.identity import IdentityEngine
from edge.identity.engine import EngineSettings, settings_from_config
from edge.identity.records import Key
from edge.identity.service import IdentityService
from edge.reid.base import ReIDBackend
from edge.runtime.config import EdgeConfig

# The lines below have always been logged as the pipeline's: operators and tests read them so.
log = logging.getLogger("edge.runtime.pipeline")


def engine_settings(cfg: EdgeConfig, reid: Optional[ReIDBackend], calibrated: int) -> EngineSettings:
    """The identity engine's settings for this config and model (``calibrated``: how many cameras
    have a floor calibration, for the log line). Without a ReID model every tracklet is its own
    identity, at once."""
    if reid is None:
        return replace(settings_from_config(cfg.matching.model_copy(update={"enabled": False}), None), min_embeddings=0)
    assert cfg.reid is not None  # the backend was built from it
    stats = getattr(reid.meta, "similarity", None)
    settings = settings_from_config(cfg.matching, stats, cfg.reid.model, getattr(reid.meta, "embedding_dim", None))
    source = "config" if cfg.matching.threshold is not None else "model metadata"
    log.info(
        "matching: %s threshold %.3f (%s), scale %.3f, %d calibrated camera(s)",
        "camera-centered" if settings.centering else "raw cosine",
        settings.threshold,
        source,
        settings.scale,
        calibrated,
    )
    return settings


def swap_below(cfg: EdgeConfig, reid: Optional[ReIDBackend]) -> Optional[float]:
    """The cosine that cuts a swapped track: the config's, else the one stored with the model
    (``similarity.swap``, measured by training or ``python -m export similarity``), else off."""
    if reid is None or cfg.reid is None or cfg.reid.swap_below is False:
        return None
    below, source = cfg.reid.swap_below, "config"
    if below is None:
        below = ((getattr(reid.meta, "similarity", None) or {}).get("swap") or {}).get("swap_below")
        source = "model metadata"
    if below is not None:
        log.info("track swaps: cut below cosine %.3f (%s)", below, source)
    return below


def identity_service(
    cfg: EdgeConfig,
    reid: Optional[ReIDBackend],
    settings: EngineSettings,
    describe: Callable[[Key], tuple[float, int]],
) -> IdentityService:
    """Who decides the identities: this box's engine, or under ``site:`` the site hub (over every
    node's cameras), with an engine of this box's own while the hub is away. ``describe`` gives a
    tracklet's detection score and frame (what the hub's events show)."""
    if cfg.site is None:
        return IdentityEngine(settings)
    from edge.site.node import site_engine  # a site node only: ZeroMQ and the hub protocol

    return site_engine(cfg, reid, describe, local=partial(IdentityEngine, settings))
