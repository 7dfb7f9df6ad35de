"""The ``matching:`` section of a camera file (and of the hub's YAML): how tracklets become
identities. Its defaults are :class:`~edge.identity.settings.EngineSettings`' and
:class:`~edge.identity.geometry.FloorRules`', the one source of each; the engine's own settings are
built from it by :func:`~edge.identity.settings.settings_from_config`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

import cv2
import numpy as np
from pydantic import Field, field_validator, model_validator

from core.configio import StrictModel
from edge.identity.geometry import FloorRules
from edge.identity.settings import EngineSettings


class TransitionWindow(StrictModel):
    src: str = Field(alias="from")
    dst: str = Field(alias="to")
    min_s: float = Field(0.0, ge=0)
    max_s: float = Field(
        description="a tracklet in dst can match an identity last seen in src only within [min_s, max_s]"
    )
    exit: Optional[list[tuple[float, float]]] = Field(
        None,
        description="the door out: polygon in src's image (pixels) where "
        "people leave towards dst; a last sighting elsewhere is not this transition",
    )
    entry: Optional[list[tuple[float, float]]] = Field(
        None, description="the door in: polygon in dst's image (pixels) where people arriving from src first appear"
    )

    @field_validator("exit", "entry")
    @classmethod
    def _polygon(cls, points: Optional[list[tuple[float, float]]]) -> Optional[list[tuple[float, float]]]:
        if points is None:
            return None
        if len(points) < 3:
            raise ValueError(f"a door is a polygon of at least 3 image points, got {len(points)}")
        if cv2.contourArea(np.asarray(points, np.float32)) < 1.0:
            raise ValueError("the door polygon encloses no area (points on one line)")
        return points


class SiteThresholdConfig(StrictModel):
    """Where the threshold comes from when neither the config nor the model gives one
    (``threshold: site``, or a model without stored statistics): this site's footage
    (``edge/identity/site_similarity.py``)."""

    store: Optional[str] = Field(
        "site_similarity.json",
        description="where the learned statistics are kept for the next start (relative to the camera "
        "file; null: not kept)",
    )
    false_match_rate: float = Field(
        0.01, gt=0, lt=0.5, description="share of different-person pairs the threshold admits"
    )
    min_pairs: int = Field(300, ge=10, description="different-person pairs gathered before the threshold is set")


class TopologyLearningConfig(StrictModel):
    """The camera topology learned while the engine runs (``edge/topology/watch.py``): from the
    tracklets it has seen end, every ``every_s`` scene seconds, as ``python -m edge.topology learn``
    learns it from a recording."""

    enabled: bool = Field(False, description="keep learning the topology while the engine runs")
    every_s: float = Field(300.0, gt=0, description="scene seconds between two learnings")
    min_evidence: int = Field(5, ge=1, description="walks before a link is trusted")
    keep: int = Field(5000, ge=10, description="the latest ended tracklets learned from")
    use: bool = Field(
        True,
        description="match with the learned transitions when the camera file gives none (else only said and written)",
    )
    out: Optional[str] = Field(
        "site.learned.yaml",
        description="camera file rewritten when the learned topology changes (relative to the camera file; "
        "null: not written)",
    )


class MatchingConfig(StrictModel):
    """The identity engine (``edge/identity``): thresholds, evidence weights, the revision window.

    Each default is the engine's own (:class:`~edge.identity.settings.EngineSettings`, the floor's
    :class:`~edge.identity.geometry.FloorRules`): one source, read here."""

    enabled: bool = Field(
        EngineSettings.enabled, description="False: every tracklet founds its own identity (for comparisons)"
    )
    threshold: Union[Annotated[float, Field(ge=-1.0, le=1.0)], Literal["site"], None] = Field(
        None,
        description="cosine at which appearance alone is neutral; None: the model's stored threshold, "
        "else this site's (learned from its footage); 'site': this site's even if the model has one",
    )
    site_threshold: SiteThresholdConfig = Field(
        default_factory=SiteThresholdConfig, description="learning the threshold from this site's footage"
    )
    learn_topology: TopologyLearningConfig = Field(
        default_factory=TopologyLearningConfig, description="learning the camera topology while the engine runs"
    )
    scale: Optional[float] = Field(
        None,
        gt=0,
        description="cosine units per unit of evidence; None: the model's different-person cosine std, "
        f"else {EngineSettings.scale:g}",
    )
    min_embeddings: int = Field(
        EngineSettings.min_embeddings, ge=1, description="evidence a tracklet needs before it is matched"
    )
    identity_ttl_s: float = Field(
        EngineSettings.identity_ttl_s, gt=0, description="identities unseen this long are forgotten"
    )
    max_identities: int = Field(
        EngineSettings.max_identities,
        ge=1,
        description="gallery bound: past it the longest-unseen identities are forgotten first",
    )
    revision_window_s: float = Field(
        EngineSettings.revision_window_s,
        ge=0,
        description="decisions about tracklets seen within this window may still change (merge, reassign)",
    )
    revise_every_s: float = Field(
        EngineSettings.revise_every_s, gt=0, description="period of the revision pass (scene time)"
    )
    relink_max_gap_s: float = Field(
        EngineSettings.relink_max_gap_s,
        ge=0,
        description="a new tracklet starting this soon after one of the same camera was last seen, "
        "near it, continues it",
    )
    relink_bonus: float = Field(
        EngineSettings.relink_bonus,
        ge=0,
        description="evidence (in scale units) for continuing a same-camera tracklet",
    )
    floor_weight: float = Field(
        EngineSettings.floor_weight,
        ge=0,
        description="evidence (in scale units) for standing at the same floor position at the same time",
    )
    transition_bonus: float = Field(
        EngineSettings.transition_bonus,
        ge=0,
        description="evidence (in scale units) for arriving within a configured transition window",
    )
    appearance_veto: Optional[float] = Field(
        EngineSettings.appearance_veto,
        gt=0,
        description="appearance this many scale units below the threshold forbids a "
        "match whatever the floor, continuity or transitions say (None: off)",
    )
    merge_margin: float = Field(EngineSettings.merge_margin, description="score two identities need to be merged")
    reassign_margin: float = Field(
        EngineSettings.reassign_margin,
        ge=0,
        description="a tracklet moves when another identity fits it this much better",
    )
    same_place_m: float = Field(
        FloorRules.near_m, gt=0, description="floor distance at the same time that counts as the same place"
    )
    different_place_m: float = Field(
        FloorRules.far_m, gt=0, description="floor distance at the same time that means two people"
    )
    max_speed_mps: float = Field(
        FloorRules.max_speed_mps, gt=0, description="nobody walks faster between two sightings"
    )
    transitions: list[TransitionWindow] = Field(
        default_factory=list, description="optional camera-to-camera time windows"
    )
    centering: Optional[bool] = Field(
        None,
        description="compare appearances with each camera's mean look taken out; None: on when "
        "the model stores centered statistics and no threshold is configured",
    )
    centering_prior_weight: float = Field(
        EngineSettings.center_prior_weight,
        gt=0,
        description="the model's mean look counts as this many tracklets in each camera's mean",
    )

    @model_validator(mode="after")
    def _places_ordered(self) -> MatchingConfig:
        if self.same_place_m >= self.different_place_m:
            raise ValueError("same_place_m must be below different_place_m")
        return self
