"""Writing the world to disk: MOT Challenge ground truth, videos, a ReID dataset, a YOLO dataset.

Ground-truth layout (one MOT Challenge sequence per camera)::

    <out>/<camera>/seqinfo.ini
    <out>/<camera>/gt/gt.txt          frame, local id, left, top, w, h, 1, 1, visibility
    <out>/<camera>/gt/gt_global.txt   the same rows with the global identity as id
    <out>/<camera>/img1/000001.jpg    (with images=True)   or   <out>/<camera>.mp4 (video=True)

Local ids number the people in the order the camera first sees them; the global id is the
world's identity, the same in every camera. ``edge.evaluate`` reads exactly this layout.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from core.mot import mot_row
from core.progress import progress as progress_bar
from sim.render import CameraRenderer, GroundTruthBox
from sim.scene import AREAS, CORRIDOR_DOORS, World

log = logging.getLogger(__name__)


def write_seqinfo(path: Path, name: str, fps: float, length: int, width: int, height: int) -> None:
    path.write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate={fps:g}\nseqLength={length}\n"
        f"imWidth={width}\nimHeight={height}\nimExt=.jpg\n"
    )


def write_mot_ground_truth(
    world: World,
    out: str | Path,
    frames: Optional[int] = None,
    images: bool = False,
    video: bool = False,
    min_visibility: float = 0.0,
    progress: bool = True,
) -> Path:
    """Write every camera of ``world`` as a MOT Challenge sequence (see the module docstring)."""
    out = Path(out)
    n_frames = frames or world.spec.num_frames
    for ci, cam in enumerate(world.cameras):
        renderer = CameraRenderer(world, ci)
        name = cam.spec.name
        seq = out / name
        (seq / "gt").mkdir(parents=True, exist_ok=True)
        if images:
            (seq / "img1").mkdir(exist_ok=True)
        writer = _video_writer(out / f"{name}.mp4", world.spec.fps, cam.spec.width, cam.spec.height) if video else None
        local_ids: dict[int, int] = {}
        with open(seq / "gt" / "gt.txt", "w") as gt, open(seq / "gt" / "gt_global.txt", "w") as gt_global:
            for f in progress_bar(range(n_frames), f"{name} ground truth", enabled=progress):
                image, boxes = renderer.render(f, draw=images or video)
                for b in boxes:
                    if b.visibility < min_visibility:
                        continue
                    local = local_ids.setdefault(b.pid, len(local_ids) + 1)
                    gt.write(mot_row(f + 1, local, b.xyxy, 1.0, b.visibility))
                    gt_global.write(mot_row(f + 1, b.pid, b.xyxy, 1.0, b.visibility))
                if image is None:  # drawn only when images or video are written
                    continue
                if images:
                    cv2.imwrite(str(seq / "img1" / f"{f + 1:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
                if writer is not None:
                    writer.write(image)
        if writer is not None:
            writer.release()
        write_seqinfo(seq / "seqinfo.ini", name, world.spec.fps, n_frames, cam.spec.width, cam.spec.height)
    log.info("wrote ground truth of %d cameras x %d frames to %s", len(world.cameras), n_frames, out)
    return out


def _video_writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (no mp4v encoder in this build?)")
    return writer


def _frames_with_boxes(
    world: World, every: int, progress: bool, desc: str
) -> Iterable[tuple[int, int, np.ndarray, list[GroundTruthBox]]]:
    renderers = [CameraRenderer(world, i) for i in range(len(world.cameras))]
    for f in progress_bar(range(0, world.spec.num_frames, every), desc, enabled=progress):
        for ci, r in enumerate(renderers):
            image, boxes = r.render(f)
            yield f, ci, image, boxes


def write_reid_dataset(
    world: World,
    root: str | Path,
    every: int = 2,
    test_fraction: float = 0.4,
    min_visibility: float = 0.3,
    holistic_visibility: float = 0.85,
    progress: bool = True,
    pid_offset: int = 0,
    camera_offset: int = 0,
) -> Path:
    """Crops of the world's people in Market-1501 layout, with an occluded query set.

    The last ``test_fraction`` of identities are held out. Their crops with visibility below
    ``holistic_visibility`` become queries (Occluded-Duke style: every query is occluded), the
    rest the gallery; crops of training identities go to ``bounding_box_train``. Crops hidden
    below ``min_visibility`` are skipped.
    """
    root = Path(root)
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    first_test = int(round(world.spec.num_identities * (1 - test_fraction))) + 1
    counts = {"bounding_box_train": 0, "query": 0, "bounding_box_test": 0}
    for f, ci, image, boxes in _frames_with_boxes(world, every, progress, "ReID crops"):
        for b in boxes:
            if b.visibility < min_visibility:
                continue
            if b.pid < first_test:
                sub = "bounding_box_train"
            else:
                sub = "query" if b.visibility < holistic_visibility else "bounding_box_test"
            x0, y0, x1, y1 = (int(round(v)) for v in b.xyxy)
            counts[sub] += 1
            name = f"{b.pid + pid_offset:04d}_c{ci + 1 + camera_offset}s1_{f:06d}_00.jpg"
            cv2.imwrite(str(root / sub / name), image[y0:y1, x0:x1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    log.info("ReID export %s: %s", root, counts)
    return root


def write_yolo_dataset(
    world: World, root: str | Path, split: str, every: int = 1, min_visibility: float = 0.3, progress: bool = True
) -> Path:
    """Frames and person labels (class 0, normalised centre/size) in Ultralytics layout."""
    root = Path(root)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for f, ci, image, boxes in _frames_with_boxes(world, every, progress, f"YOLO {split}"):
        stem = f"{world.spec.name}_s{world.spec.seed}_c{ci + 1}_{f:06d}"
        cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        h, w = image.shape[:2]
        lines = []
        for b in boxes:
            if b.visibility < min_visibility:
                continue
            x0, y0, x1, y1 = b.xyxy
            lines.append(f"0 {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}\n")
        (root / "labels" / split / f"{stem}.txt").write_text("".join(lines))
    return root


def floor_calibration(world: World) -> dict[str, dict[str, list[list[float]]]]:
    """Each camera's exact image -> floor homography (metres), as the cameras YAML's ``calibration``."""
    out = {}
    for cam in world.cameras:
        H = cam.H_inv / cam.H_inv[2, 2]
        out[cam.spec.name] = {"homography": [[float(f"{v:.9g}") for v in row] for row in H]}
    return out


def corridor_transitions(world: World, min_s: float = 2.0, max_s: float = 30.0, depth_m: float = 2.5) -> list[dict]:
    """The scene's camera topology as the cameras YAML's ``matching.transitions``: every camera of
    one area to every camera of the other, through the corridor, with its doors: the image region of
    the floor strip ``depth_m`` deep along the area's corridor side (and 1 m beyond it), clipped to
    the image. The time window is declared, not measured (a walk of a few metres, some lingering)."""
    area_of = {cam.spec.name: _area_of(cam) for cam in world.cameras}
    doors = {cam.spec.name: _door_polygon(cam, area_of[cam.spec.name], depth_m) for cam in world.cameras}
    out = []
    for a in world.cameras:
        for b in world.cameras:
            src, dst = a.spec.name, b.spec.name
            if area_of[src] is None or area_of[dst] is None or area_of[src] == area_of[dst]:
                continue
            out.append(
                {"from": src, "to": dst, "min_s": min_s, "max_s": max_s, "exit": doors[src], "entry": doors[dst]}
            )
    return out


def _area_of(cam) -> Optional[str]:
    centre = np.float64(cam.spec.ground_quad).mean(0)
    return next((a.name for a in AREAS.values() if a.x0 <= centre[0] <= a.x1 and a.y0 <= centre[1] <= a.y1), None)


def _door_polygon(cam, area_name: Optional[str], depth_m: float) -> Optional[list[list[float]]]:
    if area_name is None:
        return None
    a = AREAS[area_name]
    x0, x1, y0, y1 = a.x0 - 1.0, a.x1 + 1.0, a.y0 - 1.0, a.y1 + 1.0
    strip = {
        "east": (a.x1 - depth_m, y0, x1, y1),
        "west": (x0, y0, a.x0 + depth_m, y1),
        "north": (x0, a.y1 - depth_m, x1, y1),
        "south": (x0, y0, x1, a.y0 + depth_m),
    }[CORRIDOR_DOORS[area_name]]
    sx0, sy0, sx1, sy1 = strip
    quad = cam.project(np.array([[sx0, sy0], [sx1, sy0], [sx1, sy1], [sx0, sy1]]))
    w, h = cam.spec.width, cam.spec.height
    frame = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    area, clipped = cv2.intersectConvexConvex(cv2.convexHull(quad.astype(np.float32)), frame)
    if area <= 0 or clipped is None:
        return None
    return [[round(float(x), 1), round(float(y), 1)] for x, y in clipped.reshape(-1, 2)]


def camera_preview(world: World, frame: int, out: str | Path, tile_width: int = 480) -> Path:
    """One frame of every camera side by side, ground-truth boxes drawn, as a PNG."""
    tiles = []
    for ci in range(len(world.cameras)):
        image, boxes = CameraRenderer(world, ci).render(frame)
        for b in boxes:
            x0, y0, x1, y1 = (int(v) for v in b.xyxy)
            cv2.rectangle(image, (x0, y0), (x1, y1), (0, 255, 0), 1)
            cv2.putText(image, f"id{b.pid}", (x0, max(8, y0 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 255, 255), 1)
        cv2.putText(image, world.cameras[ci].spec.name, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        scale = tile_width / image.shape[1]
        tiles.append(cv2.resize(image, (tile_width, int(image.shape[0] * scale))))
    height = max(t.shape[0] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, height - t.shape[0], 0, 2, cv2.BORDER_CONSTANT) for t in tiles]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.hstack(tiles))
    return out
