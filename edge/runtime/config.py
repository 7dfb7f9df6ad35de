"""The camera file (``cams.yaml``): cameras and the pipeline, validated before anything starts.

Relative paths in the file are resolved against the file's folder, so a config and its models
can move together. A wrong key, type or missing file is one :class:`ConfigError` naming the
file and the dotted field (the same loader as the training recipes).

It is the reference of the camera file, one class per section in the file's order, each key
with its type, bounds, default and description; :func:`load_edge_config` after them resolves the
paths and probes the sources. Sections that a package below the runtime reads live with it:
``reid:`` in :mod:`edge.reid.config` (the backends read it), ``publisher:`` in
:mod:`edge.wire.config` (the site hub's file has one too), ``site:`` in :mod:`edge.site.config`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import Field, PrivateAttr, field_validator, model_validator

from core.configio import ConfigError, StrictModel, defining_file, load_config
from core.detector_card import sidecar_path
from edge.identity.config import MatchingConfig
from edge.identity.geometry import CalibrationError, homography_from
from edge.reid.config import ReIDConfig
from edge.runtime.governor import MAX_DETECT_EVERY
from edge.runtime.readers import is_live
from edge.runtime.source_diagnosis import why_unreadable
from edge.site.config import SiteConfig, resolve_curve
from edge.stream.config import StreamConfig
from edge.wire.config import PublisherConfig


class CameraConfig(StrictModel):
    id: str = Field(description="camera name used in topics, events and output files")
    source: str = Field(
        description="video file, image folder, rtsp/http URL, USB index ('0') or synthetic://scene?camera=N"
    )
    fps: Optional[float] = Field(None, gt=0, description="target frames per second (None: the source's own rate)")
    resize: Optional[tuple[int, int]] = Field(None, description="[width, height] every frame is resized to")
    realtime: bool = Field(
        True,
        description="files/synthetic: pace at fps and drop late frames; "
        "False: every frame, as fast as the pipeline goes",
    )
    loop: bool = Field(False, description="files/synthetic: start again at the end")
    sie_index: Optional[int] = Field(
        None, ge=0, description="camera index fed to SIE models (default: position in this list)"
    )
    timeout_s: float = Field(
        4.0,
        gt=0,
        le=60,
        description="streams (rtsp/http): give up opening, or waiting for a frame, after this long, then reconnect",
    )


class DetectorConfig(StrictModel):
    weights: str = Field(description="Ultralytics weights: .pt, .onnx, .engine or an *_openvino_model folder")
    imgsz: int = Field(640, ge=32, le=4096)
    conf: float = Field(
        0.25, ge=0.0, le=1.0, description="lowest confidence passed to the tracker (ByteTrack uses low ones too)"
    )
    iou: float = Field(0.7, gt=0.0, le=1.0, description="NMS IoU")
    device: str = Field("cpu", description="cpu, cuda, cuda:0, ...")
    half: bool = Field(False, description="FP16 inference (GPU only)")
    classes: list[int] = Field(default_factory=lambda: [0], description="class ids kept (COCO person = 0)")
    batch: bool = Field(True, description="one call for the frames of all cameras (False for single-batch engines)")
    backend: Literal["auto", "ultralytics", "exported"] = Field(
        "auto",
        description="exported: run an .onnx file or OpenVINO folder directly (ONNX Runtime / OpenVINO, "
        "no PyTorch; edge/runtime/exported_detector.py); ultralytics: any format Ultralytics loads "
        "(the [ultralytics] extra); auto: exported for .onnx, OpenVINO and engines built by "
        "python -m export detector-engine, else ultralytics",
    )

    def runs_on(self) -> Literal["ultralytics", "exported"]:
        """The backend that runs these weights (``auto`` resolved by the file's format)."""
        if self.backend != "auto":
            return self.backend
        fmt = weights_format(self.weights)
        if fmt == "engine":  # ours carries its card beside it; Ultralytics' engines carry theirs inside
            return "exported" if sidecar_path(self.weights).is_file() else "ultralytics"
        return "exported" if fmt in EXPORTED_FORMATS else "ultralytics"


EXPORTED_FORMATS = ("onnx", "openvino")


def weights_format(weights: str) -> str:
    """``openvino`` for an OpenVINO export (``*_openvino_model`` folder or its ``.xml``), else the suffix."""
    path = Path(weights)
    if path.name.endswith("_openvino_model") or path.suffix == ".xml" or (path.is_dir() and any(path.glob("*.xml"))):
        return "openvino"
    return path.suffix.lstrip(".").lower()


ULTRALYTICS_TRACKERS = ("ultralytics-bytetrack", "botsort")
# our typed thresholds and the Ultralytics tracker yaml keys they set (min_iou is 1 - match_thresh)
TYPED_THRESHOLDS = {
    "high_score": "track_high_thresh",
    "low_score": "track_low_thresh",
    "new_track_score": "new_track_thresh",
    "min_iou": "match_thresh",
}


class TrackerConfig(StrictModel):
    """One tracker per camera. ``bytetrack`` is Roboflow's ``trackers`` (no PyTorch: the edge
    install); ``ultralytics-bytetrack`` and ``botsort`` are Ultralytics' (the ``[ultralytics]``
    extra). The typed thresholds mean the same for both; the defaults are Ultralytics'
    bytetrack.yaml."""

    kind: Literal["bytetrack", "ultralytics-bytetrack", "botsort"] = "bytetrack"
    high_score: float = Field(
        0.25, ge=0, le=1, description="detections at or above it are matched first and may start tracks"
    )
    low_score: float = Field(
        0.1,
        ge=0,
        le=1,
        description="detections between it and high_score only keep existing tracks (ByteTrack's second stage)",
    )
    new_track_score: float = Field(0.25, ge=0, le=1, description="lowest score that starts a new track")
    min_iou: float = Field(0.2, gt=0, lt=1, description="lowest IoU between a track's predicted box and a detection")
    lost_s: float = Field(1.0, gt=0, description="seconds of media time a lost track is kept for")
    config: Optional[str] = Field(None, description="ultralytics kinds: the tracker yaml (default: Ultralytics' own)")
    overrides: dict[str, float | int | bool | str] = Field(
        default_factory=dict, description="ultralytics kinds: keys of their tracker yaml to change"
    )
    reid_features: bool = Field(
        False, description="botsort: associate with our ReID embeddings (embeds every detection every frame)"
    )

    @model_validator(mode="after")
    def _kind_options(self) -> TrackerConfig:
        if self.reid_features and self.kind != "botsort":
            raise ValueError("reid_features needs kind: botsort (ByteTrack has no appearance term)")
        if self.kind not in ULTRALYTICS_TRACKERS and (self.config or self.overrides):
            raise ValueError(
                "config and overrides are Ultralytics tracker yaml: use kind: ultralytics-bytetrack or botsort, "
                "or the fields high_score, low_score, new_track_score, min_iou, lost_s"
            )
        if "track_buffer" in self.overrides:
            raise ValueError("overrides.track_buffer counts frames: set lost_s (seconds of media time) instead")
        typed = sorted(set(self.overrides) & set(TYPED_THRESHOLDS.values()))
        if typed:
            fields = ", ".join(k for k, v in TYPED_THRESHOLDS.items() if v in typed)
            raise ValueError(f"overrides {typed}: set {fields} instead (the same for every tracker kind)")
        return self

    def yaml_thresholds(self) -> dict[str, float]:
        """The typed thresholds as Ultralytics' yaml keys: those set in the camera file, or all of
        them when no yaml of one's own is given (the defaults are Ultralytics' own)."""
        given = self.model_fields_set if self.config else set(TYPED_THRESHOLDS)
        values = {f: (1.0 - self.min_iou if f == "min_iou" else getattr(self, f)) for f in TYPED_THRESHOLDS}
        return {TYPED_THRESHOLDS[f]: v for f, v in values.items() if f in given}


class CalibrationConfig(StrictModel):
    """Image -> floor (metres) mapping of one camera: a 3x3 matrix, or >= 4 point pairs."""

    homography: Optional[list[list[float]]] = Field(None, description="3x3 image -> floor matrix (row-major)")
    image_points: Optional[list[tuple[float, float]]] = Field(None, description="pixels [[u, v], ...] of floor points")
    floor_points: Optional[list[tuple[float, float]]] = Field(
        None, description="the same points on the floor, metres [[x, y], ...]"
    )

    @model_validator(mode="after")
    def _one_way(self) -> CalibrationConfig:
        if (self.homography is None) == (self.image_points is None and self.floor_points is None):
            raise ValueError("give either homography or image_points + floor_points")
        if self.homography is None and (self.image_points is None or self.floor_points is None):
            raise ValueError("image_points and floor_points come together")
        return self


class OutputConfig(StrictModel):
    mot_dir: Optional[str] = Field(
        None, description="write <camera>.txt (local ids) and <camera>.global.txt (MOT format)"
    )
    video_dir: Optional[str] = Field(None, description="write an annotated <camera>.mp4")
    floor_map: Optional[str] = Field(
        None, description="write a top-down PNG of the tracks on the floor (calibrated cameras)"
    )
    tracklet_log: Optional[str] = Field(
        None,
        description="write every tracklet summary the identity engine is given (JSON lines, .gz "
        "compressed): what python -m edge.topology learn learns the site from",
    )


class RunConfig(StrictModel):
    max_frames: Optional[int] = Field(None, ge=1, description="stop after this many frames per camera")
    duration_s: Optional[float] = Field(None, gt=0, description="stop after this many seconds")
    stats_interval_s: float = Field(5.0, gt=0, description="period of the stats log line and event")
    reconnect_max_s: float = Field(10.0, gt=0, description="longest wait between reconnection attempts")


class GovernorConfig(StrictModel):
    """What the runtime may skip when it can't keep up (edge/runtime/governor.py, docs/edge.md)."""

    detect_every: Union[Literal["auto"], int] = Field(
        "auto",
        description="run the detector on every N-th frame of a camera, "
        "boxes carried between by optical flow; auto: 1 while the box keeps up, more when it can't",
    )
    max_detect_every: int = Field(MAX_DETECT_EVERY, ge=1, le=30, description="auto never goes beyond this")

    @field_validator("detect_every")
    @classmethod
    def _positive(cls, value):
        if value != "auto" and value < 1:
            raise ValueError(f"{value!r}: a whole number >= 1, or auto")
        return value


class EdgeConfig(StrictModel):
    cameras: list[CameraConfig] = Field(min_length=1)
    detector: DetectorConfig
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    reid: Optional[ReIDConfig] = Field(None, description="None: tracking only, every tracklet its own identity")
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    calibration: dict[str, CalibrationConfig] = Field(
        default_factory=dict, description="per camera id: image -> floor homography (optional)"
    )
    publisher: PublisherConfig = Field(default_factory=PublisherConfig)
    outputs: OutputConfig = Field(default_factory=OutputConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    governor: GovernorConfig = Field(default_factory=GovernorConfig)
    site: Optional[SiteConfig] = Field(
        None, description="send tracklets to a site hub instead of matching locally (edge/site)"
    )
    stream: Optional[StreamConfig] = Field(
        None, description="publish the tracklet summaries to a region's stream, its site ids back (edge/stream)"
    )
    _file: Optional[Path] = PrivateAttr(None)  # the camera file it was read from (a learned file's _BASE_)

    @property
    def file(self) -> Optional[Path]:
        """The camera file this config was read from (None: built in code)."""
        return self._file

    @property
    def replayable(self) -> bool:
        """Every camera in lockstep on a source that gives the same frames each run (a file, an
        image folder, a synthetic camera): each run computes the same (a killed streaming node
        started again carries on its session, ``edge/stream/resume.py``)."""
        return all(not c.realtime and not is_live(c.source) for c in self.cameras)

    @property
    def replay_key(self) -> str:
        """What a replayable run's messages are made from (its cameras, detector, tracker, model and
        matching), hashed: a killed run's session is carried on only by a run with the same key;
        "" when the run is not replayable."""
        if not self.replayable:
            return ""
        made_of = self.model_dump(
            mode="json",
            include={"cameras", "detector", "tracker", "reid", "matching"},
            exclude={"matching": {"site_threshold": {"store"}, "learn_topology": {"out"}}},  # where it writes
        )
        return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def site_node(self) -> bool:
        """Whether a site decides this node's global ids: a ZeroMQ hub (``site:``) or a region's
        hubs (``stream:`` with ``site_ids``)."""
        return self.site is not None or (self.stream is not None and self.stream.site_ids)

    @model_validator(mode="after")
    def _one_site(self) -> EdgeConfig:
        if self.site is not None and self.stream is not None and self.stream.site_ids:
            raise ValueError(
                "site: and stream: both give this node site ids: choose one (a ZeroMQ hub, or a region's "
                "stream), or set stream.site_ids: false to only publish to the stream"
            )
        return self

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        ids = [c.id for c in cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids must be unique, repeated: {dupes}")
        return cameras


EdgeConfig.model_rebuild()


def _resolve(base: Path, value: Optional[str]) -> Optional[str]:
    return None if value is None else _resolve_path(base, value)


def _resolve_path(base: Path, value: str) -> str:
    """A path relative to ``base`` made absolute; URLs and USB indices as they are."""
    if "://" in value or value.isdigit():
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _check_exists(path: Optional[str], field: str, file: Path, what: str = "file") -> None:
    if path is not None and not Path(path).exists():
        raise ConfigError(f"{file}: {field}: {what} not found: {path}")


def _check_source(source: str, field: str, file: Path) -> None:
    """A video file or image folder that cannot be read is a config error, found before any
    model loads (streams and USB cameras may come up later: they are retried at run time)."""
    reason = why_unreadable(source)
    if reason is not None:
        raise ConfigError(f"{file}: {field}: {reason}: {source}")


def _check_writable(path: Optional[str], field: str, file: Path, folder: bool = True) -> None:
    """An output folder (or an output file's folder) that exists or can be created, and is
    writable, so a run does not find out after loading its models, or never says."""
    if path is None:
        return
    target = Path(path)
    if not folder and target.is_dir():
        raise ConfigError(f"{file}: {field}: is a folder, not a file: {path}")
    existing = target if folder else target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{file}: {field}: {existing} is a file, not a folder: {path}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{file}: {field}: folder not writable: {existing}")


def load_edge_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> EdgeConfig:
    """Read and validate a camera file; every path it names must exist, every video file or
    image folder must decode, every output folder must be writable.

    Paths in the file are relative to the file that sets them (the file itself or one of its
    ``_BASE_`` chain); paths given as command-line overrides are relative to the current
    directory, as a shell user expects.
    """
    path = Path(path)
    cfg = load_config(EdgeConfig, path, overrides)
    overridden = {item.split("=", 1)[0].strip() for item in overrides}

    def base_for(field: str) -> Path:
        return Path.cwd() if field in overridden else defining_file(path, field).parent

    for i, cam in enumerate(cfg.cameras):
        cam.source = _resolve_path(base_for("cameras"), cam.source)
        if "://" not in cam.source and not cam.source.isdigit():  # a URL or USB index is tried at run time
            _check_source(cam.source, f"cameras.{i}.source", path)
    cfg.detector.weights = _resolve_path(base_for("detector.weights"), cfg.detector.weights)
    _check_exists(cfg.detector.weights, "detector.weights", path)
    cfg.tracker.config = _resolve(base_for("tracker.config"), cfg.tracker.config)
    _check_exists(cfg.tracker.config, "tracker.config", path)
    if cfg.reid is not None:
        cfg.reid.model = _resolve_path(base_for("reid.model"), cfg.reid.model)
        _check_exists(cfg.reid.model, "reid.model", path)
    known = {c.id for c in cfg.cameras}
    for i, t in enumerate(cfg.matching.transitions):
        for end in (t.src, t.dst):
            if end not in known:
                raise ConfigError(
                    f"{path}: matching.transitions.{i}: unknown camera {end!r} (cameras: {sorted(known)})"
                )
    for cam_id, calibration in cfg.calibration.items():
        if cam_id not in known:
            raise ConfigError(f"{path}: calibration.{cam_id}: unknown camera {cam_id!r} (cameras: {sorted(known)})")
        try:
            homography_from(calibration, f"calibration.{cam_id}")
        except CalibrationError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    cfg._file = path
    store = cfg.matching.site_threshold.store
    cfg.matching.site_threshold.store = _resolve(base_for("matching.site_threshold.store"), store)
    learned = cfg.matching.learn_topology
    if learned.enabled:
        if cfg.site_node:
            raise ConfigError(
                f"{path}: matching.learn_topology: a site node does not match; learn the topology on the hub "
                "or from a recording (python -m edge.topology learn)"
            )
        learned.out = _resolve(base_for("matching.learn_topology.out"), learned.out)
        _check_writable(learned.out, "matching.learn_topology.out", path, folder=False)
    for key in ("mot_dir", "video_dir", "floor_map", "tracklet_log"):
        setattr(cfg.outputs, key, _resolve(base_for(f"outputs.{key}"), getattr(cfg.outputs, key)))
        _check_writable(getattr(cfg.outputs, key), f"outputs.{key}", path, folder=key in ("mot_dir", "video_dir"))
    resolve_curve(cfg.publisher.curve, base_for("publisher.curve"), f"{path}: publisher")
    if cfg.site is not None:
        resolve_curve(cfg.site.curve, base_for("site.curve"), f"{path}: site")
    return cfg
