"""Synthetic people and cameras: a ReID dataset anyone can generate, deterministic from a seed.

The appearance model (:class:`PersonAppearance`, :func:`render_person`) draws a person-like
figure whose colours and patterns are identity-specific: skin, hair (short/long), optional hat,
top (solid / stripes / check / two-tone), bottom (trousers / shorts / skirt), shoes, optional
bag. Cameras (:class:`CameraLook`) add a colour cast, brightness, blur and noise. Occluders
(poles, cars, benches, other people) hide part of some images.

:func:`write_synthetic_dataset` writes Market-1501 layout (``bounding_box_train``, ``query``,
``bounding_box_test``; names ``<pid>_c<cam>s1_<idx>_00.jpg``), so the Market-1501 parser reads
it. The multi-camera video world reuses the same appearance model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from core.progress import progress as progress_bar

log = logging.getLogger(__name__)

Color = tuple[int, int, int]
TOP_PATTERNS = ("solid", "stripes", "check", "two_tone")
BOTTOM_KINDS = ("trousers", "shorts", "skirt")


def _three(values: np.ndarray) -> tuple[float, float, float]:
    a, b, c = values
    return float(a), float(b), float(c)


def _random_color(
    rng: np.random.Generator, sat: tuple[float, float] = (0.3, 1.0), val: tuple[float, float] = (0.25, 1.0)
) -> Color:
    hsv = np.array([[[rng.integers(0, 180), int(255 * rng.uniform(*sat)), int(255 * rng.uniform(*val))]]], np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


@dataclass(frozen=True)
class PersonAppearance:
    """Everything that makes one identity look like itself (RGB colours)."""

    skin: Color
    hair: Color
    long_hair: bool
    hat: Optional[Color]
    top: Color
    top_pattern: str
    top_accent: Color
    bottom: Color
    bottom_kind: str
    shoes: Color
    bag: Optional[Color]
    bag_side: int  # -1 left, +1 right
    build: float  # body width factor, 0.85..1.15
    height: float  # body height factor, 0.9..1.0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> PersonAppearance:
        skin_tones = [(241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172)]
        hair_tones = [(20, 20, 20), (90, 60, 30), (160, 120, 60), (200, 180, 120), (120, 120, 120)]
        return cls(
            skin=skin_tones[rng.integers(len(skin_tones))],
            hair=hair_tones[rng.integers(len(hair_tones))],
            long_hair=bool(rng.random() < 0.4),
            hat=_random_color(rng) if rng.random() < 0.2 else None,
            top=_random_color(rng),
            top_pattern=TOP_PATTERNS[rng.integers(len(TOP_PATTERNS))],
            top_accent=_random_color(rng),
            bottom=_random_color(rng, sat=(0.1, 0.8), val=(0.15, 0.9)),
            bottom_kind=BOTTOM_KINDS[rng.integers(len(BOTTOM_KINDS))],
            shoes=_random_color(rng, sat=(0.0, 0.6), val=(0.1, 0.9)),
            bag=_random_color(rng) if rng.random() < 0.35 else None,
            bag_side=int(rng.choice([-1, 1])),
            build=float(rng.uniform(0.85, 1.15)),
            height=float(rng.uniform(0.9, 1.0)),
        )


def render_person(
    app: PersonAppearance, height: int, width: int, phase: float = 0.0, facing: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``app`` filling a ``height`` x ``width`` box.

    ``phase`` (radians) swings the legs and arms for walking; ``facing`` (+1/-1) mirrors the
    figure. Returns (RGB uint8 [H, W, 3], alpha float32 [H, W] in {0, 1}).
    """
    img = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    H = height * app.height
    top0 = height - H  # shorter people leave space above
    cx = width / 2
    bw = width * 0.42 * app.build  # body (torso) width

    def y(f: float) -> int:
        return int(round(top0 + f * H))

    def draw_poly(points: list[tuple[float, float]], color: Color) -> None:
        pts = np.array([[int(round(px)), int(round(py))] for px, py in points], np.int32)
        cv2.fillPoly(img, [pts], color)
        cv2.fillPoly(mask, [pts], 1)

    def draw_rect(x0: float, y0: float, x1: float, y1: float, color: Color) -> None:
        draw_poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color)

    swing = np.sin(phase)
    # legs (trousers / shorts / skirt), with a walking swing
    hip, knee, ankle = y(0.52), y(0.74), y(0.95)
    leg_w = bw * 0.42
    for side, s in ((-1, swing), (1, -swing)):
        x_hip = cx + side * bw * 0.24
        x_ankle = x_hip + s * width * 0.12
        lower = app.skin if app.bottom_kind in ("shorts", "skirt") else app.bottom
        draw_poly(
            [
                (x_hip - leg_w / 2, hip),
                (x_hip + leg_w / 2, hip),
                (x_ankle + leg_w / 2, ankle),
                (x_ankle - leg_w / 2, ankle),
            ],
            lower,
        )
        if app.bottom_kind == "shorts":
            xm = (x_hip + x_ankle) / 2
            draw_poly(
                [(x_hip - leg_w / 2, hip), (x_hip + leg_w / 2, hip), (xm + leg_w / 2, knee), (xm - leg_w / 2, knee)],
                app.bottom,
            )
        draw_rect(x_ankle - leg_w * 0.6, ankle - 1, x_ankle + leg_w * 0.7 * facing + leg_w * 0.1, y(1.0), app.shoes)
    if app.bottom_kind == "skirt":
        draw_poly([(cx - bw / 2, hip), (cx + bw / 2, hip), (cx + bw * 0.75, knee), (cx - bw * 0.75, knee)], app.bottom)
    # torso with pattern
    shoulder = y(0.2)
    x0, x1 = cx - bw / 2, cx + bw / 2
    draw_rect(x0, shoulder, x1, hip, app.top)
    if app.top_pattern == "stripes":
        for k in range(4):
            yy = shoulder + (k + 0.5) * (hip - shoulder) / 4
            cv2.line(img, (int(x0), int(yy)), (int(x1), int(yy)), app.top_accent, max(1, height // 40))
    elif app.top_pattern == "check":
        step = max(2, int(bw / 4))
        for xx in range(int(x0), int(x1), step):
            cv2.line(img, (xx, shoulder), (xx, hip), app.top_accent, 1)
        for yy in range(shoulder, hip, step):
            cv2.line(img, (int(x0), yy), (int(x1), yy), app.top_accent, 1)
    elif app.top_pattern == "two_tone":
        img[shoulder : (shoulder + hip) // 2, int(x0) : int(x1) + 1][
            mask[shoulder : (shoulder + hip) // 2, int(x0) : int(x1) + 1] > 0
        ] = app.top_accent
    # arms swing opposite to the legs
    arm_w = bw * 0.22
    for side, s in ((-1, -swing), (1, swing)):
        xs = cx + side * (bw / 2 + arm_w / 2)
        xh = xs + s * width * 0.08
        draw_poly(
            [
                (xs - arm_w / 2, shoulder),
                (xs + arm_w / 2, shoulder),
                (xh + arm_w / 2, y(0.5)),
                (xh - arm_w / 2, y(0.5)),
            ],
            app.top,
        )
        draw_rect(xh - arm_w / 2, y(0.5), xh + arm_w / 2, y(0.55), app.skin)
    # head, hair, hat
    head_r = max(2, int(H * 0.085))
    head_c = (int(cx + facing * width * 0.02), y(0.11))
    if app.long_hair:
        draw_rect(
            head_c[0] - head_r * 1.1, head_c[1] - head_r, head_c[0] + head_r * 1.1, head_c[1] + head_r * 2.2, app.hair
        )
    cv2.circle(img, head_c, head_r, app.skin, -1)
    cv2.circle(mask, head_c, head_r, 1, -1)
    cv2.ellipse(img, head_c, (head_r, head_r), 0, 180, 360, app.hair, -1)
    if app.hat is not None:
        draw_rect(
            head_c[0] - head_r * 1.3,
            head_c[1] - head_r * 0.6,
            head_c[0] + head_r * 1.3,
            head_c[1] - head_r * 0.3,
            app.hat,
        )
        draw_rect(
            head_c[0] - head_r * 0.9,
            head_c[1] - head_r * 1.4,
            head_c[0] + head_r * 0.9,
            head_c[1] - head_r * 0.5,
            app.hat,
        )
    if app.bag is not None:
        bx = cx + app.bag_side * facing * (bw / 2 + arm_w * 0.8)
        draw_rect(bx - bw * 0.25, y(0.42), bx + bw * 0.25, y(0.62), app.bag)
    return img, mask.astype(np.float32)


@dataclass(frozen=True)
class CameraLook:
    """How one camera renders colours: per-channel gain, brightness, blur and sensor noise."""

    gain: tuple[float, float, float]
    brightness: float
    blur_sigma: float
    noise_std: float
    background: Color

    @classmethod
    def sample(cls, rng: np.random.Generator) -> CameraLook:
        return cls(
            gain=_three(rng.uniform(0.8, 1.2, 3)),
            brightness=float(rng.uniform(0.75, 1.2)),
            blur_sigma=float(rng.uniform(0.0, 1.0)),
            noise_std=float(rng.uniform(2.0, 8.0)),
            background=_random_color(rng, sat=(0.0, 0.3), val=(0.3, 0.8)),
        )

    def apply(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out: np.ndarray = img.astype(np.float32) * np.array(self.gain, np.float32) * self.brightness
        if self.blur_sigma > 0.3:
            out = cv2.GaussianBlur(out, (0, 0), self.blur_sigma)
        out += rng.normal(0.0, self.noise_std, out.shape).astype(np.float32)
        return np.clip(out, 0, 255).astype(np.uint8)


def paste(canvas: np.ndarray, sprite: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    """Alpha-blend ``sprite`` onto ``canvas`` with its top-left at (x, y), clipped to the canvas."""
    h, w = sprite.shape[:2]
    H, W = canvas.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return
    s = sprite[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (a * s + (1 - a) * region).astype(np.uint8)


def textured_background(height: int, width: int, base: Color, rng: np.random.Generator) -> np.ndarray:
    """A floor/wall gradient with a few clutter blocks, so crops are not on a flat colour."""
    grad = np.linspace(0.8, 1.15, height, dtype=np.float32)[:, None, None]
    img = np.clip(np.ones((height, width, 3), np.float32) * np.array(base, np.float32) * grad, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        x, yy = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 8, width // 2)), int(rng.integers(height // 10, height // 3))
        cv2.rectangle(img, (x, yy), (x + w, yy + h), _random_color(rng, sat=(0.0, 0.4)), -1)
    return img


OCCLUDER_KINDS = ("pole", "car", "bench", "person")


def draw_occluder(
    canvas: np.ndarray, rng: np.random.Generator, kind: Optional[str] = None, fraction: Optional[float] = None
) -> str:
    """Hide part of a crop behind a pole, a car, a bench or another person; returns the kind."""
    H, W = canvas.shape[:2]
    kind = kind or OCCLUDER_KINDS[rng.integers(len(OCCLUDER_KINDS))]
    frac = fraction if fraction is not None else float(rng.uniform(0.25, 0.5))
    color = _random_color(rng, sat=(0.0, 0.8))
    if kind == "pole":
        w = max(2, int(W * frac))
        x = int(rng.integers(0, max(1, W - w)))
        cv2.rectangle(canvas, (x, 0), (x + w, H), color, -1)
    elif kind == "car":
        h = int(H * frac)
        cv2.rectangle(canvas, (0, H - h), (W, H), color, -1)
        cv2.rectangle(canvas, (W // 6, H - h), (W - W // 6, H - h + max(2, h // 3)), (60, 70, 80), -1)
    elif kind == "bench":
        h = int(H * frac * 0.8)
        top = H - h - H // 10
        cv2.rectangle(canvas, (0, top), (W, top + max(2, h // 3)), color, -1)
        cv2.rectangle(canvas, (0, top + h // 2), (W, H - H // 10), color, -1)
    else:
        other = PersonAppearance.sample(rng)
        sprite, alpha = render_person(other, H, W, phase=float(rng.uniform(0, 2 * np.pi)))
        side = int(rng.choice([-1, 1]))
        paste(canvas, sprite, alpha, side * int(W * (1 - frac)), int(H * 0.05))
    return kind


def render_crop(
    app: PersonAppearance, look: CameraLook, height: int, width: int, rng: np.random.Generator, occlude: bool = False
) -> np.ndarray:
    """One detection-like crop of ``app`` seen by a camera with ``look``."""
    canvas = textured_background(height, width, look.background, rng)
    scale = rng.uniform(0.82, 0.98)
    ph, pw = int(height * scale), int(width * scale * rng.uniform(0.85, 1.0))
    sprite, alpha = render_person(app, ph, pw, phase=float(rng.uniform(0, 2 * np.pi)), facing=int(rng.choice([-1, 1])))
    x = (width - pw) // 2 + int(rng.integers(-width // 10, width // 10 + 1))
    y = height - ph - int(rng.integers(0, max(1, height // 20)))
    paste(canvas, sprite, alpha, x, y)
    if occlude:
        draw_occluder(canvas, rng)
    return look.apply(canvas, rng)


@dataclass
class SyntheticSpec:
    num_train_ids: int = 40
    num_test_ids: int = 30
    num_cameras: int = 4
    images_per_id_per_camera: int = 3
    height: int = 128
    width: int = 64
    occlusion_prob: float = 0.2
    occluded_query: bool = False
    seed: int = 0


def write_synthetic_dataset(root: str | Path, spec: SyntheticSpec = SyntheticSpec(), progress: bool = True) -> Path:
    """Generate a Market-1501-layout dataset under ``root``; same spec, same bytes.

    Each identity is seen by a random subset of 2..num_cameras cameras. Test identities get one
    query image in each of up to two of their cameras, the rest goes to the gallery. With
    ``occluded_query`` every query is occluded (Occluded-Duke style).
    """
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    looks = [CameraLook.sample(rng) for _ in range(spec.num_cameras)]
    total = spec.num_train_ids + spec.num_test_ids
    appearances = [PersonAppearance.sample(rng) for _ in range(total)]
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    counter = 0
    for pid0 in progress_bar(range(total), "synthetic identities", enabled=progress):
        pid = pid0 + 1
        is_test = pid0 >= spec.num_train_ids
        n_cams = int(rng.integers(2, spec.num_cameras + 1))
        cams = sorted(rng.choice(spec.num_cameras, n_cams, replace=False).tolist())
        query_cams = set(cams[:2]) if is_test else set()
        for cam in cams:
            for k in range(spec.images_per_id_per_camera):
                is_query = cam in query_cams and k == 0
                occlude = (spec.occluded_query and is_query) or bool(rng.random() < spec.occlusion_prob)
                img = render_crop(appearances[pid0], looks[cam], spec.height, spec.width, rng, occlude)
                sub = "query" if is_query else ("bounding_box_test" if is_test else "bounding_box_train")
                counter += 1
                name = f"{pid:04d}_c{cam + 1}s1_{counter:06d}_00.jpg"
                cv2.imwrite(
                    str(root / sub / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
                )
    meta = {
        "spec": asdict(spec),
        "cameras": [asdict(look) for look in looks],
        "appearances": [asdict(a) for a in appearances],
    }
    (root / "synthetic.json").write_text(json.dumps(meta, indent=1))
    log.info("wrote synthetic dataset to %s (%d images)", root, counter)
    return root


def ensure_synthetic_dataset(root: str | Path, spec: SyntheticSpec) -> Path:
    """Generate the dataset unless ``root`` already holds one made from the same spec."""
    root = Path(root)
    meta = root / "synthetic.json"
    if meta.is_file() and json.loads(meta.read_text()).get("spec") == asdict(spec):
        return root
    if meta.is_file():
        raise FileExistsError(
            f"{root} holds a synthetic dataset made from another spec; remove it or choose another data.root"
        )
    return write_synthetic_dataset(root, spec)
