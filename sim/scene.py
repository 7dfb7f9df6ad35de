"""A multi-camera world on a shared ground plane: cameras, static occluders, walking people.

Everything is a pure function of a :class:`WorldSpec` (and its seed), so a frame, a box or a
person's position can be asked for in any order and is always the same.

Geometry. The ground plane is in metres. Area A (x 0..12, y 0..8) is seen by two cameras from
different sides (their views overlap on x 2..12); area B (x 20..32) is seen by a third camera;
the corridor between them is seen by nobody, so people leave one view and re-enter another
seconds later. Each camera is a homography from ground to image, defined by which ground
quadrilateral maps onto which image quadrilateral (near edge at the bottom of the image).
A person's pixel height at a ground point comes from the local scale of that homography along
the camera's near edge - a flat-ground approximation that is enough for plausible perspective.

Paths. Each identity enters at an area's border at some time, walks to a few waypoints (with an
occasional stop), leaves, and may cross the hidden corridor to the other area and come back
later. Positions between waypoints are linear in time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Optional

import cv2
import numpy as np

from sim.people import CameraLook, PersonAppearance

PERSON_HEIGHT_M = 1.8  # height of the rendered sprite box; the figure fills app.height of it
STRIDE_M = 1.4  # one leg-swing cycle per stride


@dataclass(frozen=True)
class Area:
    name: str
    x0: float
    y0: float
    x1: float
    y1: float


AREAS = {"A": Area("A", 0.0, 0.0, 12.0, 8.0), "B": Area("B", 20.0, 0.0, 32.0, 8.0)}
CORRIDOR_DOORS = {"A": "east", "B": "west"}  # the side of each area that leads to the hidden corridor


@dataclass(frozen=True)
class CameraSpec:
    """One camera: a name, an image size and the ground quad it sees.

    ``ground_quad`` lists ground points that land on the image's bottom-left, bottom-right,
    top-right and top-left of ``image_quad`` (fractions of width/height).
    """

    name: str
    width: int
    height: int
    ground_quad: tuple[tuple[float, float], ...]
    image_quad: tuple[tuple[float, float], ...] = ((0.02, 1.0), (0.98, 1.0), (0.74, 0.32), (0.26, 0.32))


@dataclass(frozen=True)
class Occluder:
    """A static object standing on the ground: ``pole`` at p0, ``car``/``bench`` from p0 to p1."""

    kind: str
    p0: tuple[float, float]
    p1: Optional[tuple[float, float]] = None
    height_m: float = 1.5


@dataclass(frozen=True)
class WorldSpec:
    """Everything the world is made from. Same spec, same frames and ground truth."""

    name: str = "demo"
    seed: int = 0
    num_identities: int = 20
    duration_s: float = 60.0
    fps: float = 10.0
    cameras: tuple[CameraSpec, ...] = ()
    occluders: tuple[Occluder, ...] = ()
    speed_range: tuple[float, float] = (1.0, 1.6)
    stop_prob: float = 0.3
    cross_prob: float = 0.7  # after the first area, walk through the corridor to the other one
    return_prob: float = 0.3  # after the second area, come back to the first
    scripted: tuple[
        tuple[tuple[float, float, float], ...], ...
    ] = ()  # per person ((t, x, y), ...) instead of random walks

    @property
    def num_frames(self) -> int:
        return int(round(self.duration_s * self.fps))


def three_camera_rig(scale: float = 1.0) -> tuple[CameraSpec, ...]:
    """Cameras 1 and 2 overlap on area A from the south and the east; camera 3 watches area B."""
    s = lambda v: int(round(v * scale / 2) * 2)  # noqa: E731 - even sizes for video codecs
    return (
        CameraSpec("cam1", s(640), s(360), ((0, 0), (12, 0), (12, 8), (0, 8))),
        CameraSpec("cam2", s(512), s(384), ((12, 0), (12, 8), (2, 8), (2, 0))),
        CameraSpec("cam3", s(576), s(324), ((32, 8), (20, 8), (20, 0), (32, 0))),
    )


def default_occluders() -> tuple[Occluder, ...]:
    return (
        Occluder("pole", (4.0, 3.0), height_m=4.0),
        Occluder("car", (7.0, 6.6), (10.5, 6.6), height_m=1.4),
        Occluder("bench", (25.0, 2.5), (27.0, 2.5), height_m=0.5),
        Occluder("pole", (28.0, 5.0), height_m=4.0),
        Occluder("car", (21.0, 1.0), (24.5, 1.0), height_m=1.4),
    )


SCENES: dict[str, WorldSpec] = {
    "demo": WorldSpec(
        "demo",
        seed=0,
        num_identities=20,
        duration_s=60.0,
        fps=10.0,
        cameras=three_camera_rig(),
        occluders=default_occluders(),
    ),
    "train": WorldSpec(
        "train",
        seed=1,
        num_identities=60,
        duration_s=120.0,
        fps=5.0,
        cameras=three_camera_rig(),
        occluders=default_occluders(),
    ),
    "tiny": WorldSpec(
        "tiny",
        seed=0,
        num_identities=6,
        duration_s=12.0,
        fps=5.0,
        cameras=three_camera_rig(),
        occluders=default_occluders(),
    ),
}


class Camera:
    """Ground <-> image mapping for one :class:`CameraSpec`."""

    def __init__(self, spec: CameraSpec):
        self.spec = spec
        img = np.array([[u * spec.width, v * spec.height] for u, v in spec.image_quad], np.float32)
        self.H = cv2.getPerspectiveTransform(np.array(spec.ground_quad, np.float32), img).astype(np.float64)
        self.H_inv = np.linalg.inv(self.H)
        g = np.array(spec.ground_quad, np.float64)
        right = g[1] - g[0]
        self._right = right / np.linalg.norm(right)  # ground direction of the image's x axis

    def project(self, points: np.ndarray) -> np.ndarray:
        """Ground points [N, 2] -> image points [N, 2]."""
        p = np.c_[np.asarray(points, np.float64).reshape(-1, 2), np.ones(len(np.atleast_2d(points)))] @ self.H.T
        return p[:, :2] / p[:, 2:3]

    def unproject(self, points: np.ndarray) -> np.ndarray:
        """Image points [N, 2] (on the ground) -> ground points [N, 2]."""
        p = np.c_[np.asarray(points, np.float64).reshape(-1, 2), np.ones(len(np.atleast_2d(points)))] @ self.H_inv.T
        return p[:, :2] / p[:, 2:3]

    def pixels_per_metre(self, point: tuple[float, float]) -> float:
        a, b = self.project(np.array([point, np.asarray(point) + 0.1 * self._right]))
        return float(np.linalg.norm(b - a) / 0.1)

    def sees(self, point: tuple[float, float]) -> bool:
        """True when the ground point lies inside the camera's ground quad."""
        quad = np.array(self.spec.ground_quad, np.float32)
        return cv2.pointPolygonTest(quad, (float(point[0]), float(point[1])), False) >= 0


@dataclass
class Walker:
    """One identity's appearance and its timed polyline on the ground."""

    pid: int
    appearance: PersonAppearance
    times: np.ndarray  # [K] seconds, non-decreasing
    points: np.ndarray  # [K, 2] metres
    distance: np.ndarray = field(init=False)  # [K] cumulative walked metres (for the gait phase)

    def __post_init__(self) -> None:
        steps = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        self.distance = np.r_[0.0, np.cumsum(steps)]

    def state(self, t: float) -> Optional[tuple[np.ndarray, float, int]]:
        """(position, gait phase, facing +1/-1) at time ``t``, or None when not in the world."""
        if t < self.times[0] or t > self.times[-1]:
            return None
        x = np.interp(t, self.times, self.points[:, 0])
        y = np.interp(t, self.times, self.points[:, 1])
        d = np.interp(t, self.times, self.distance)
        k = int(np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, len(self.times) - 2))
        vx = self.points[k + 1, 0] - self.points[k, 0]
        return np.array([x, y]), float(2 * np.pi * d / STRIDE_M), 1 if vx >= 0 else -1


class _PathBuilder:
    def __init__(self, start: np.ndarray, t0: float, speed: float):
        self.times, self.points, self.speed = [t0], [np.asarray(start, float)], speed

    def walk(self, to: np.ndarray) -> None:
        to = np.asarray(to, float)
        dt = float(np.linalg.norm(to - self.points[-1])) / self.speed
        self.times.append(self.times[-1] + max(dt, 1e-3))
        self.points.append(to)

    def wait(self, seconds: float) -> None:
        self.times.append(self.times[-1] + seconds)
        self.points.append(self.points[-1].copy())


def _border_point(area: Area, side: str, rng: np.random.Generator) -> np.ndarray:
    y = rng.uniform(area.y0 + 1.0, area.y1 - 1.0)
    x = rng.uniform(area.x0 + 1.0, area.x1 - 1.0)
    return np.array(
        {
            "west": (area.x0 - 1.0, y),
            "east": (area.x1 + 1.0, y),
            "south": (x, area.y0 - 1.0),
            "north": (x, area.y1 + 1.0),
        }[side]
    )


def _inside_point(area: Area, rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(area.x0 + 1.0, area.x1 - 1.0), rng.uniform(area.y0 + 0.8, area.y1 - 0.8)])


def _visit(path: _PathBuilder, area: Area, exit_point: np.ndarray, spec: WorldSpec, rng: np.random.Generator) -> None:
    for _ in range(int(rng.integers(1, 3))):
        path.walk(_inside_point(area, rng))
        if rng.random() < spec.stop_prob:
            path.wait(float(rng.uniform(1.0, 4.0)))
    path.walk(exit_point)


def make_walkers(spec: WorldSpec) -> list[Walker]:
    """Identities with their paths, drawn from ``spec.seed`` (or taken from ``spec.scripted``)."""
    rng = np.random.default_rng(spec.seed)
    if spec.scripted:
        return [
            Walker(
                pid,
                PersonAppearance.sample(rng),
                np.array([p[0] for p in path], float),
                np.array([p[1:] for p in path], float),
            )
            for pid, path in enumerate(spec.scripted, start=1)
        ]
    walkers = []
    outer = {"A": ("west", "south", "north"), "B": ("east", "south", "north")}
    for pid in range(1, spec.num_identities + 1):
        app = PersonAppearance.sample(rng)
        first = "A" if rng.random() < 0.6 else "B"
        other = "B" if first == "A" else "A"
        t0 = float(rng.uniform(0.0, 0.55 * spec.duration_s))
        path = _PathBuilder(
            _border_point(AREAS[first], outer[first][rng.integers(3)], rng), t0, float(rng.uniform(*spec.speed_range))
        )
        route = [first]
        if rng.random() < spec.cross_prob:
            route.append(other)
            if rng.random() < spec.return_prob:
                route.append(first)
        for i, name in enumerate(route):
            area = AREAS[name]
            leaving_to = route[i + 1] if i + 1 < len(route) else None
            exit_side = CORRIDOR_DOORS[name] if leaving_to else outer[name][rng.integers(3)]
            _visit(path, area, _border_point(area, exit_side, rng), spec, rng)
            if leaving_to:  # through the hidden corridor, sometimes lingering there
                door = _border_point(AREAS[leaving_to], CORRIDOR_DOORS[leaving_to], rng)
                path.walk(np.array([16.0, door[1]]))
                path.wait(float(rng.uniform(0.0, 6.0)))
                path.walk(door)
        walkers.append(Walker(pid, app, np.array(path.times), np.array(path.points)))
    return walkers


def register_scene(spec: WorldSpec) -> None:
    """Make ``spec`` reachable as ``synthetic://<spec.name>`` (scripted scenes in tests, custom rigs)."""
    SCENES[spec.name] = spec


def resolve_scene(name_or_spec: str | WorldSpec, **overrides) -> WorldSpec:
    """A named scene (``demo``, ``train``, ``tiny``) with optional field overrides (seed, fps...)."""
    if isinstance(name_or_spec, WorldSpec):
        spec = name_or_spec
    elif name_or_spec in SCENES:
        spec = SCENES[name_or_spec]
    else:
        raise ValueError(f"unknown synthetic scene {name_or_spec!r}; known: {', '.join(sorted(SCENES))}")
    if overrides:
        spec = replace(spec, **overrides)
    return spec


class World:
    """A built world: cameras, walkers and camera looks for one spec."""

    def __init__(self, spec: WorldSpec):
        self.spec = spec
        self.cameras = [Camera(c) for c in spec.cameras]
        self.walkers = make_walkers(spec)
        look_rng = np.random.default_rng(spec.seed + 7919)
        self.looks = [CameraLook.sample(look_rng) for _ in spec.cameras]

    @cached_property
    def camera_index(self) -> dict[str, int]:
        return {c.spec.name: i for i, c in enumerate(self.cameras)}

    def camera(self, key: int | str) -> int:
        """Camera index from an index (0-based) or a name."""
        if isinstance(key, str) and not key.isdigit():
            if key not in self.camera_index:
                raise ValueError(f"scene {self.spec.name!r} has no camera {key!r}; cameras: {list(self.camera_index)}")
            return self.camera_index[key]
        idx = int(key)
        if not 0 <= idx < len(self.cameras):
            raise ValueError(f"scene {self.spec.name!r} has cameras 0..{len(self.cameras) - 1}, not {idx}")
        return idx

    def people_at(self, t: float) -> list[tuple[Walker, np.ndarray, float, int]]:
        out = []
        for w in self.walkers:
            s = w.state(t)
            if s is not None:
                out.append((w, *s))
        return out
