"""The identity engine: one person, one global id across cameras.

``engine.py`` decides (assign, revise, finalise, expire) from tracklet summaries, on the state kept
in ``state.py`` (identities, their tracklets and appearances, the score); ``revision.py`` revises
provisional decisions (move, merge, reclaim); ``rules.py`` holds the hard rules and the evidence
besides appearance; ``settings.py`` what the engine decides with (the one source of each default);
``geometry.py`` knows the floor (camera homographies, same place / walking-speed evidence);
``topology.py`` the ways between cameras (time windows, doors); ``centering.py`` each camera's mean
look; ``records.py`` holds the plain data going in and out; ``service.py`` what the pipeline asks
of whoever decides (this engine, or a site node's link to its hub). No sockets, threads or files:
the single-box runtime and a site hub feed the same engine.
"""

from edge.identity.engine import IdentityEngine, cluster_offline
from edge.identity.geometry import CalibrationError, FloorRules, FloorTrack, Homography, floor_evidence, homography_from
from edge.identity.records import Decision, DecisionKind, Identity, TrackletSummary
from edge.identity.service import IdentityService, IdentityView
from edge.identity.settings import EngineSettings, settings_from_config

__all__ = [
    "CalibrationError",
    "Decision",
    "DecisionKind",
    "EngineSettings",
    "FloorRules",
    "FloorTrack",
    "Homography",
    "Identity",
    "IdentityEngine",
    "IdentityService",
    "IdentityView",
    "TrackletSummary",
    "cluster_offline",
    "floor_evidence",
    "homography_from",
    "settings_from_config",
]
