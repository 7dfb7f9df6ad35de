"""Construction from the camera file: what :class:`~edge.runtime.pipeline.EdgePipeline` is made of
that the config and the model card decide together.

- the identity engine's settings: the threshold and scale from ``matching``, else the model's
  stored similarity statistics, else this site's (:func:`engine_settings`, :func:`threshold_source`);
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
from pathlib import Path
from typing import Optional

from edge.identity import IdentityEngine
from edge.identity.engine import EngineSettings, settings_from_config
from edge.identity.records import Key
from edge.identity.service import IdentityService
from edge.identity.site_similarity import SiteSimilarity, load_statistics, store_statistics
from edge.identity.threshold_learning import ThresholdLearning
from edge.reid.base import ReIDBackend
from edge.runtime.config import EdgeConfig
from edge.topology.watch import TopologyWatch

TO_LEARN = "this site (to learn)"  # threshold_source(): no threshold yet, this site's footage will give it

# The lines below have always been logged as the pipeline's: operators and tests read them so.
log = logging.getLogger("edge.runtime.pipeline")


def engine_settings(cfg: EdgeConfig, reid: Optional[ReIDBackend], calibrated: int) -> EngineSettings:
    """The identity engine's settings for this config and model (``calibrated``: how many cameras
    have a floor calibration, for the log line). Without a ReID model every tracklet is its own
    identity, at once. The threshold is the config's, else the model's stored one, else this
    site's (stored by an earlier run, :func:`site_similarity`); while it is still to be learned the
    settings carry a placeholder that :class:`~edge.identity.threshold_learning.ThresholdLearning`
    replaces."""
    if reid is None:
        return replace(settings_from_config(cfg.matching.model_copy(update={"enabled": False}), None), min_embeddings=0)
    assert cfg.reid is not None  # the backend was built from it
    source, stats = threshold_source(cfg, reid)
    if source == TO_LEARN:
        placeholder = {"threshold": 1.0, "diff_std": 1.0}  # nothing is decided with it
        stats = {**placeholder, "centered": placeholder}
    settings = settings_from_config(cfg.matching, stats, cfg.reid.model, getattr(reid.meta, "embedding_dim", None))
    if source == TO_LEARN:
        log.info(
            "matching: the threshold will be learned from this site's footage, %d calibrated camera(s)", calibrated
        )
        return settings
    log.info(
        "matching: %s threshold %.3f (%s), scale %.3f, %d calibrated camera(s)",
        "camera-centered" if settings.centering else "raw cosine",
        settings.threshold,
        source,
        settings.scale,
        calibrated,
    )
    return settings


def threshold_source(cfg: EdgeConfig, reid: ReIDBackend) -> tuple[str, Optional[dict]]:
    """Where the threshold comes from, and the statistics that carry it: ``config``, ``model
    metadata``, ``this site (<store>)`` (learned before) or ``this site (to learn)``."""
    model_stats = getattr(reid.meta, "similarity", None)
    m = cfg.matching
    if isinstance(m.threshold, float) or not m.enabled:
        return "config", model_stats
    if m.threshold is None and (model_stats or {}).get("threshold") is not None:
        return "model metadata", model_stats
    if cfg.site_node:
        raise ValueError(
            "matching: a site node needs a threshold (the model's or matching.threshold): learn this site's "
            "on a single box first (matching.threshold: site) and copy the number"
        )
    store = m.site_threshold.store
    record = load_statistics(Path(store), model_id(cfg)) if store else None
    if record is not None:
        return f"this site ({store}, {record.get('measured', '?')})", record["statistics"]
    return TO_LEARN, None


def site_similarity(cfg: EdgeConfig, reid: Optional[ReIDBackend]) -> Optional[SiteSimilarity]:
    """The statistics to gather when the threshold is to be learned from this site's footage, else None."""
    if reid is None or threshold_source(cfg, reid)[0] != TO_LEARN:
        return None
    st = cfg.matching.site_threshold
    log.info("matching: no threshold from the config or the model: learning it from this site's footage")
    return SiteSimilarity(st.false_match_rate, st.min_pairs)


def topology_watch(cfg: EdgeConfig, reid: Optional[ReIDBackend]) -> Optional[TopologyWatch]:
    """The topology learned while the engine runs (``matching.learn_topology``), else None."""
    learn = cfg.matching.learn_topology
    if not learn.enabled or reid is None:
        return None
    live = any(c.realtime for c in cfg.cameras)  # a lockstep run learns in its step: the same each time
    use = learn.use and not cfg.matching.transitions
    log.info(
        "topology: learned every %g s from the latest %d ended tracklets%s%s", learn.every_s, learn.keep,
        ", matched with" if use else " (the camera file's transitions are matched with)",
        f", written to {learn.out}" if learn.out else "",
    )  # fmt: skip
    out = Path(learn.out) if learn.out else None
    return TopologyWatch(learn.every_s, learn.min_evidence, learn.keep, out, cfg.file, background=live, apply=use)


def model_id(cfg: EdgeConfig) -> str:
    """The ReID model's name and content hash (what stored site statistics belong to)."""
    from edge.wire.site_protocol import model_id as file_id

    assert cfg.reid is not None
    return file_id(cfg.reid.model)


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
    learning: Optional[SiteSimilarity] = None,
) -> IdentityService:
    """Who decides the identities: this box's engine, or under ``site:`` the site hub (over every
    node's cameras), or under ``stream:`` the region's hubs (``site_ids``, the default), each with
    an engine of this box's own while the hub is away. ``describe`` gives a
    tracklet's detection score and frame (what the hub's events show). With ``learning`` (the
    threshold is this site's, still to be learned) the box's engine waits for it."""
    if learning is not None:
        store = cfg.matching.site_threshold.store
        keep = None
        if store:
            rate = cfg.matching.site_threshold.false_match_rate
            keep = lambda stats: store_statistics(Path(store), stats, model_id(cfg), rate)  # noqa: E731
        assert cfg.reid is not None and reid is not None  # learning needs a model
        dim = getattr(reid.meta, "embedding_dim", None)
        settings_for = partial(settings_from_config, cfg.matching, model_name=cfg.reid.model, embedding_dim=dim)
        return ThresholdLearning(settings, learning, settings_for, keep)
    if cfg.stream is not None and cfg.stream.site_ids and reid is not None:
        from edge.stream.site_ids import StreamSiteIds  # a streaming node only: NATS

        cameras = [c.id for c in cfg.cameras]
        local = partial(IdentityEngine, settings)
        return StreamSiteIds(cfg.stream, cameras, reid.meta.embedding_dim, local=local, replay=cfg.replay_key)
    if cfg.site is None:
        return IdentityEngine(settings)
    from edge.site.node import site_engine  # a site node only: ZeroMQ and the hub protocol

    return site_engine(cfg, reid, describe, local=partial(IdentityEngine, settings))
