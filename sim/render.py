"""Drawing the world through one camera, with the ground truth of what it shows.

A frame and its ground truth come from the same drawing pass, so boxes and visibilities are
exact: people and static occluders are painted far to near (by the image row of their foot
point) into the frame and into a label map; a person's visibility is the share of their figure
still showing in the label map (out-of-frame parts count as hidden). Frames come out BGR, as an
OpenCV capture would give them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Optional, overload

import cv2
import numpy as np

from sim.people import PersonAppearance, render_person, textured_background
from sim.scene import PERSON_HEIGHT_M, Camera, Occluder, World

PHASE_STEPS = 8  # gait phases are quantised so sprites can be cached


@dataclass(frozen=True)
class GroundTruthBox:
    """One person seen by one camera in one frame. ``xyxy`` is clipped to the image."""

    pid: int
    xyxy: tuple[float, float, float, float]
    visibility: float
    ground: tuple[float, float]


@lru_cache(maxsize=4096)
def _sprite(
    app: PersonAppearance, height: int, width: int, phase_step: int, facing: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    rgb, alpha = render_person(app, height, width, phase=2 * np.pi * phase_step / PHASE_STEPS, facing=facing)
    ys, xs = np.nonzero(alpha)
    tight = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else (0, 0, width, height)
    return rgb, alpha.astype(bool), tight


class CameraRenderer:
    """Frames and ground truth for one camera of a :class:`World`."""

    def __init__(self, world: World, camera_index: int):
        self.world = world
        self.index = camera_index
        self.camera: Camera = world.cameras[camera_index]
        self.look = world.looks[camera_index]
        self.width, self.height = self.camera.spec.width, self.camera.spec.height
        self.background = self._background()
        shapes = [self._occluder_shape(o) for o in world.spec.occluders]
        self._occluders = [o for o in shapes if o is not None]

    def _background(self) -> np.ndarray:
        rng = np.random.default_rng((self.world.spec.seed, self.index, 1))
        wall = textured_background(self.height, self.width, self.look.background, rng)
        floor_colour = tuple(int(c * 0.8) for c in self.look.background[::-1])
        quad = self.camera.project(np.array(self.camera.spec.ground_quad, np.float64)).astype(np.int32)
        cv2.fillPoly(wall, [quad], floor_colour)
        g = np.array(self.camera.spec.ground_quad, np.float64)
        x0, y0 = g.min(0)
        x1, y1 = g.max(0)
        for x in np.arange(np.ceil(x0 / 2) * 2, x1 + 1e-6, 2.0):  # floor tiles every 2 m
            a, b = self.camera.project(np.array([[x, y0], [x, y1]])).astype(int)
            cv2.line(wall, tuple(a), tuple(b), (90, 90, 90), 1)
        for y in np.arange(np.ceil(y0 / 2) * 2, y1 + 1e-6, 2.0):
            a, b = self.camera.project(np.array([[x0, y], [x1, y]])).astype(int)
            cv2.line(wall, tuple(a), tuple(b), (90, 90, 90), 1)
        return wall  # RGB

    def _occluder_shape(self, occ: Occluder) -> tuple[float, np.ndarray, tuple[int, int, int]] | None:
        """(foot row, polygon [N, 2] int, colour) in this camera, or None when out of view."""
        base = [occ.p0] if occ.p1 is None else [occ.p0, occ.p1]
        if not any(self.camera.sees(p) for p in base):
            return None
        feet = self.camera.project(np.array(base))
        ppm = self.camera.pixels_per_metre(tuple(np.mean(base, axis=0)))
        half = 0.12 * ppm if occ.p1 is None else 0.0
        left, right = feet[:, 0].min() - half, feet[:, 0].max() + half
        bottom = feet[:, 1].max()
        top = bottom - occ.height_m * ppm
        poly = np.array([[left, bottom], [right, bottom], [right, top], [left, top]], np.int32)
        colour = {"pole": (70, 70, 80), "car": (160, 40, 40), "bench": (120, 80, 40)}.get(occ.kind, (100, 100, 100))
        return float(bottom), poly, colour

    @overload
    def render(self, frame_index: int, draw: Literal[True] = True) -> tuple[np.ndarray, list[GroundTruthBox]]: ...

    @overload
    def render(self, frame_index: int, draw: bool) -> tuple[Optional[np.ndarray], list[GroundTruthBox]]: ...

    def render(self, frame_index: int, draw: bool = True) -> tuple[Optional[np.ndarray], list[GroundTruthBox]]:
        """The BGR frame (None when ``draw`` is False) and its ground-truth boxes."""
        t = frame_index / self.world.spec.fps
        canvas = self.background.copy()
        labels = np.zeros((self.height, self.width), np.int16)
        items: list[tuple[float, int, Any]] = []  # (foot row, kind, payload: (polygon, colour) or person number)
        for row, poly, colour in self._occluders:
            items.append((row, 0, (poly, colour)))
        people = []
        for walker, pos, phase, facing in self.world.people_at(t):
            if not self.camera.sees(tuple(pos)):
                continue
            u, v = self.camera.project(pos[None])[0]
            ppm = self.camera.pixels_per_metre(tuple(pos))
            h = max(8, int(round(PERSON_HEIGHT_M * ppm)))
            w = max(4, int(round(h * 0.45)))
            step = int(round(phase / (2 * np.pi) * PHASE_STEPS)) % PHASE_STEPS
            rgb, alpha, tight = _sprite(walker.appearance, h, w, step, facing)
            x, y = int(round(u - w / 2)), int(round(v - h))
            people.append((walker, pos, rgb, alpha, tight, x, y))
            items.append((v, 1, len(people)))
        items.sort(key=lambda it: (it[0], it[1]))
        for _, kind, payload in items:
            if kind == 0:
                poly, colour = payload
                cv2.fillPoly(canvas, [poly], colour)
                cv2.fillPoly(labels, [poly], -1)
            else:
                _, _, rgb, alpha, _, x, y = people[payload - 1]
                self._paste(canvas, labels, rgb, alpha, x, y, payload)
        counts = np.bincount(labels.ravel().clip(0), minlength=len(people) + 1)
        boxes = []
        for k, (walker, pos, _rgb, alpha, tight, x, y) in enumerate(people, start=1):
            vis = float(counts[k] / max(1, alpha.sum()))
            x0, y0 = max(0, x + tight[0]), max(0, y + tight[1])
            x1, y1 = min(self.width, x + tight[2]), min(self.height, y + tight[3])
            if vis <= 0 or x1 - x0 < 2 or y1 - y0 < 4:
                continue
            boxes.append(
                GroundTruthBox(
                    walker.pid,
                    (float(x0), float(y0), float(x1), float(y1)),
                    round(vis, 3),
                    (float(pos[0]), float(pos[1])),
                )
            )
        if not draw:
            return None, boxes
        rng = np.random.default_rng((self.world.spec.seed, self.index, frame_index + 2))
        return cv2.cvtColor(self.look.apply(canvas, rng), cv2.COLOR_RGB2BGR), boxes

    def _paste(
        self, canvas: np.ndarray, labels: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x: int, y: int, label: int
    ) -> None:
        h, w = alpha.shape
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, self.width), min(y + h, self.height)
        if x0 >= x1 or y0 >= y1:
            return
        m = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
        canvas[y0:y1, x0:x1][m] = rgb[y0 - y : y1 - y, x0 - x : x1 - x][m]
        labels[y0:y1, x0:x1][m] = label
