"""Everything the identity engine decides with, and how a config and a model's statistics give it.

:class:`EngineSettings` is the one place each default lives: the ``matching`` section of a camera
file (:class:`edge.identity.config.MatchingConfig`) reads its field defaults from here, so a default
changed here changes both (see that class for what each setting means to a user).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edge.identity.geometry import FloorRules
from edge.identity.topology import Transition

if TYPE_CHECKING:
    from edge.identity.config import MatchingConfig, TransitionWindow


@dataclass(frozen=True)
class EngineSettings:
    """Everything the engine decides with (see :class:`edge.identity.config.MatchingConfig` for each)."""

    threshold: float
    scale: float = 0.1
    enabled: bool = True
    min_embeddings: int = 2
    identity_ttl_s: float = 300.0
    max_identities: int = 10000
    revision_window_s: float = 30.0
    revise_every_s: float = 1.0
    relink_max_gap_s: float = 2.0
    relink_bonus: float = 1.0
    floor_weight: float = 2.0
    transition_bonus: float = 1.0
    appearance_veto: Optional[float] = None  # appearance this many scale units below the threshold forbids a pair
    merge_margin: float = 0.5
    reassign_margin: float = 1.0
    transitions: dict[tuple[str, str], Transition] = field(default_factory=dict)
    floor: FloorRules = field(default_factory=FloorRules)
    centering: bool = False  # compare appearances with each camera's mean look taken out (centering.py)
    center_prior: Optional[np.ndarray] = None  # the model's mean tracklet appearance (None: zeros)
    center_prior_parts: Optional[np.ndarray] = None
    center_prior_weight: float = 3.0


def settings_from_config(
    cfg: MatchingConfig,
    model_similarity: Optional[Mapping[str, Any]],
    model_name: str = "the ReID model",
    embedding_dim: Optional[int] = None,
) -> EngineSettings:
    """Engine settings from ``matching`` (an :class:`edge.identity.config.MatchingConfig`) and the model's stored
    similarity statistics (or a site's, ``site_similarity.py``). The threshold is the config's, else
    the statistics'; neither is an error.

    Camera centering is on when the model carries centered statistics (``similarity.centered``)
    and no threshold is configured, unless ``matching.centering`` says otherwise; its threshold
    and scale are then the centered ones, since centered cosines live on another scale."""
    stats = model_similarity or {}
    given = isinstance(cfg.threshold, float)  # else the statistics' (the model's, or a site's for "site")
    centering = cfg.centering if cfg.centering is not None else ("centered" in stats and not given)
    if centering and cfg.enabled:
        if "centered" not in stats and not given:
            raise ValueError(
                f"{model_name} has no centered similarity statistics: set matching.threshold for centered "
                "appearances, or matching.centering: false (or store them: python -m export similarity)"
            )
        stats = stats.get("centered", {})
    threshold = cfg.threshold if isinstance(cfg.threshold, float) else stats.get("threshold")
    if threshold is None and cfg.enabled:
        raise ValueError(
            f"{model_name} has no stored matching threshold (third-party or older export): set matching.threshold"
        )
    prior = _array((model_similarity or {}).get("mean")) if centering else None
    if prior is not None and (prior.ndim != 1 or (embedding_dim and prior.size != embedding_dim)):
        raise ValueError(f"{model_name}: similarity.mean has {prior.size} values, its embeddings {embedding_dim}")
    scale = cfg.scale
    if scale is None:  # one unit of evidence = one standard deviation of different-person cosines
        scale = float(stats["diff_std"]) if stats.get("diff_std", 0) > 0 else EngineSettings.scale
    return EngineSettings(
        threshold=float(threshold if threshold is not None else 1.0),
        scale=scale,
        enabled=cfg.enabled,
        min_embeddings=cfg.min_embeddings,
        identity_ttl_s=cfg.identity_ttl_s,
        max_identities=cfg.max_identities,
        revision_window_s=cfg.revision_window_s,
        revise_every_s=cfg.revise_every_s,
        relink_max_gap_s=cfg.relink_max_gap_s,
        relink_bonus=cfg.relink_bonus,
        floor_weight=cfg.floor_weight,
        transition_bonus=cfg.transition_bonus,
        appearance_veto=cfg.appearance_veto,
        merge_margin=cfg.merge_margin,
        reassign_margin=cfg.reassign_margin,
        transitions=transitions_from(cfg.transitions),
        floor=FloorRules(near_m=cfg.same_place_m, far_m=cfg.different_place_m, max_speed_mps=cfg.max_speed_mps),
        centering=bool(centering and cfg.enabled),
        center_prior=prior,
        center_prior_parts=_array((model_similarity or {}).get("part_mean")),
        center_prior_weight=cfg.centering_prior_weight,
    )


def transitions_from(windows: Iterable[TransitionWindow]) -> dict[tuple[str, str], Transition]:
    """The engine's transitions from the camera file's ``matching.transitions`` entries."""
    return {(t.src, t.dst): Transition.build(t.min_s, t.max_s, t.exit, t.entry) for t in windows}


def _array(values: Any) -> Optional[np.ndarray]:
    return None if values is None else np.asarray(values, np.float32)
