"""``python -m edge.calibrate --cameras cams.yaml --camera cam1 --out cam1_floor.png``

Checks one camera's floor calibration by eye: takes the camera's first frame (or ``--image``),
computes the image -> floor homography from the ``calibration`` entry of the cameras YAML (a 3x3
matrix, or >= 4 image/floor point pairs solved with OpenCV's ``findHomography``), prints it as
YAML ready to paste with its reprojection error, and draws the floor grid (every ``--grid``
metres) into the frame as a PNG. Clicked points are circles, and crosses mark where the
homography puts their floor coordinates: they should sit on top of each other.
"""

from __future__ import annotations

import argparse
import logging

import cv2
import numpy as np
import yaml

from core.cli import fail, setup_console_logging
from core.configio import ConfigError
from edge.identity.geometry import CalibrationError, homography_from
from edge.runtime.config import load_edge_config
from edge.runtime.floor_map import draw_floor_grid

log = logging.getLogger("edge.calibrate")


def first_frame(source: str) -> np.ndarray:
    from edge.runtime.readers import make_reader
    from edge.runtime.source_diagnosis import SourceError

    try:
        reader = make_reader(source)
        reader.open()
        image = reader.read()
        reader.close()
    except SourceError as exc:
        raise ValueError(str(exc)) from None
    if image is None:
        raise ValueError(f"no frame could be read from {source}")
    return image


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m edge.calibrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cameras", required=True, help="cameras YAML with a calibration section")
    parser.add_argument("--camera", required=True, help="camera id")
    parser.add_argument("--out", required=True, help="PNG to write (the frame with the floor grid)")
    parser.add_argument("--image", default=None, help="draw on this image instead of the camera's first frame")
    parser.add_argument("--grid", type=float, default=1.0, help="grid step in metres")
    args = parser.parse_args(argv)
    setup_console_logging()
    try:
        cfg = load_edge_config(args.cameras)
        cam = next((c for c in cfg.cameras if c.id == args.camera), None)
        if cam is None:
            raise ValueError(f"{args.cameras}: no camera {args.camera!r} (cameras: {[c.id for c in cfg.cameras]})")
        calibration = cfg.calibration.get(args.camera)
        if calibration is None:
            raise ValueError(
                f"{args.cameras}: calibration.{args.camera}: missing (give a homography or image_points + floor_points)"
            )
        h = homography_from(calibration, f"calibration.{args.camera}")
        image = cv2.imread(args.image) if args.image else first_frame(cam.source)
        if image is None:
            raise ValueError(f"cannot read image {args.image}")
        clicked, floor = calibration.image_points, calibration.floor_points  # they come together
        points = (clicked, floor) if clicked and floor else None
        canvas = draw_floor_grid(image, h, args.grid, points=points)
    except (ConfigError, CalibrationError, ValueError) as exc:
        fail(str(exc))
    cv2.imwrite(args.out, canvas)
    matrix = [[float(f"{v:.9g}") for v in row] for row in (h.H / h.H[2, 2])]
    print(yaml.safe_dump({"calibration": {args.camera: {"homography": matrix}}}, default_flow_style=None).strip())
    print(
        f"# reprojection error {h.reprojection_error_m:.3f} m, floor error near the marks {h.floor_error_m:.2f} m "
        f"(3 px of clicking); grid drawn into {args.out}"
    )
    return {
        "homography": matrix,
        "reprojection_error_m": h.reprojection_error_m,
        "floor_error_m": h.floor_error_m,
        "png": args.out,
    }


if __name__ == "__main__":
    main()
