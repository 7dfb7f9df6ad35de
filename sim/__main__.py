"""``python -m sim``: write a synthetic scene's ground truth, videos, ReID or YOLO data."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from core.cli import one_line_errors, setup_console_logging
from sim import writers
from sim.scene import SCENES, World, resolve_scene


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    parser.add_argument("what", choices=["mot", "reid", "yolo", "preview", "calibration"])
    parser.add_argument("--scene", default="demo", help=f"one of {sorted(SCENES)}")
    parser.add_argument(
        "--seed",
        type=int,
        nargs="*",
        default=None,
        help="override the scene's seed (other people); reid: several seeds go into one dataset",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder (preview: PNG path; calibration: YAML path, with the corridor transitions and their doors)",
    )
    parser.add_argument("--frames", type=int, default=None, help="mot: only the first N frames")
    parser.add_argument("--images", action="store_true", help="mot: also write img1/*.jpg")
    parser.add_argument("--video", action="store_true", help="mot: also write <camera>.mp4")
    parser.add_argument("--every", type=int, default=2, help="reid/yolo: take every N-th frame")
    parser.add_argument("--split", default="train", help="yolo: split name (train/val)")
    parser.add_argument("--frame", type=int, default=150, help="preview: which frame")
    args = parser.parse_args(argv)
    setup_console_logging()
    with one_line_errors(ValueError, OSError):  # an unknown scene, an unwritable folder
        write(args)


def write(args: argparse.Namespace) -> None:
    seeds = args.seed or [None]
    if args.what == "reid":
        for i, seed in enumerate(seeds):
            world = World(resolve_scene(args.scene, **({} if seed is None else {"seed": seed})))
            n_cams = len(world.cameras)
            writers.write_reid_dataset(
                world, args.out, every=args.every, pid_offset=i * world.spec.num_identities, camera_offset=i * n_cams
            )
        return
    world = World(resolve_scene(args.scene, **({} if seeds[0] is None else {"seed": seeds[0]})))
    if args.what == "mot":
        writers.write_mot_ground_truth(world, args.out, args.frames, images=args.images, video=args.video)
    elif args.what == "calibration":
        site = {
            "calibration": writers.floor_calibration(world),
            "matching": {"transitions": writers.corridor_transitions(world)},
        }
        Path(args.out).write_text(yaml.dump(site, Dumper=_NoAliases, default_flow_style=None, sort_keys=False))
        print(args.out)
    elif args.what == "yolo":
        writers.write_yolo_dataset(world, args.out, args.split, every=args.every)
    else:
        print(writers.camera_preview(world, args.frame, args.out))


class _NoAliases(yaml.SafeDumper):
    """Write shared door polygons out in full: a cameras YAML is read and edited by people."""

    def ignore_aliases(self, data) -> bool:
        return True


if __name__ == "__main__":
    main()
