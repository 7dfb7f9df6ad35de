"""The identity engine: one person, one global id across cameras.

``engine.py`` decides (assign, merge, reassign, expire) from tracklet summaries; ``geometry.py``
knows the floor (camera homographies, same place / walking-speed evidence); ``topology.py`` the
ways between cameras (time windows, doors); ``centering.py`` each camera's mean look;
``records.py`` holds the plain data going in and out. No sockets, threads or files: the single-box runtime and a site
hub feed the same engine.
"""

from edge.identity.engine import EngineSettings, Identity, IdentityEngine
from edge.identity.geometry import CalibrationError, FloorRules, FloorTrack, Homography, floor_evidence, homography_from
from edge.identity.records import Decision, TrackletSummary
from edge.identity.service import IdentityService, IdentityView

__all__ = [
    "CalibrationError",
    "Decision",
    "EngineSettings",
    "FloorRules",
    "FloorTrack",
    "Homography",
    "Identity",
    "IdentityEngine",
    "IdentityService",
    "IdentityView",
    "TrackletSummary",
    "floor_evidence",
    "homography_from",
]
