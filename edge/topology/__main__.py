"""``python -m edge.topology learn --log run.jsonl.gz --cameras cams.yaml --out site.yaml``

Learns the site's camera topology from a run's tracklet log (``outputs.tracklet_log`` of
``python -m edge.run``: a recording of the site, other days and other people than the ones it
will be used on): which cameras people walk between and how long it takes, where they leave and
come in, which cameras overlap. Writes a camera file (``_BASE_`` the given one, the learned
``matching.transitions``, the evidence as comments) and a picture of it (``--picture``, default
beside ``--out``). The threshold and model are the camera file's (confident matches are judged by
them).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from core.cli import fail, setup_console_logging
from core.configio import ConfigError

log = logging.getLogger("edge.topology")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m edge.topology", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    learn = sub.add_parser("learn", help="learn the topology from a tracklet log")
    learn.add_argument("--log", required=True, help="tracklet log of a run (outputs.tracklet_log)")
    learn.add_argument("--cameras", required=True, help="the camera file the run used (model, threshold)")
    learn.add_argument("--out", required=True, help="camera file to write (YAML)")
    learn.add_argument("--picture", default=None, help="PNG to draw (default: --out with .png)")
    learn.add_argument("--min-evidence", type=int, default=None, help="walks before a link is trusted (default 5)")
    learn.add_argument("--no-frames", action="store_true", help="draw without reading each camera's first frame")
    args = parser.parse_args(argv)
    setup_console_logging()
    return learn_command(args)


def learn_command(args: argparse.Namespace) -> dict:
    from edge.reid.factory import build_backend
    from edge.runtime.build import TO_LEARN, engine_settings, threshold_source
    from edge.runtime.config import load_edge_config
    from edge.site.tracklet_log import final_summaries
    from edge.topology.learn import learn_site
    from edge.topology.links import MIN_EVIDENCE
    from edge.topology.picture import draw_topology
    from edge.topology.site_file import evidence_lines, write_site_file

    try:
        cfg = load_edge_config(args.cameras)
        if cfg.reid is None:
            raise ValueError(f"{args.cameras}: no reid section: the topology is learned from appearances")
        reid = build_backend(cfg.reid)
        if threshold_source(cfg, reid)[0] == TO_LEARN:
            raise ValueError(
                f"{args.cameras}: no threshold yet (the model stores none and this site's is not learned): "
                "run edge.run on the site once to learn it, or set matching.threshold"
            )
        settings = engine_settings(cfg, reid, 0)
        tracklets = final_summaries(args.log)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    cameras = [c.id for c in cfg.cameras]
    unknown = sorted({s.camera for s in tracklets} - set(cameras))
    if unknown:
        fail(f"{args.log}: cameras {unknown} are not in {args.cameras} (cameras: {cameras})")
    frames = {} if args.no_frames else _first_frames(cfg)
    widths = {cam: float(frame.shape[1]) for cam, frame in frames.items()}
    topology = learn_site(args.log, settings, args.min_evidence or MIN_EVIDENCE, widths)
    if cfg.calibration and topology.calibration:  # one floor per site: the given one
        log.info(
            "%s has a floor calibration: the learned plane of %s is not written",
            args.cameras,
            sorted(topology.calibration),
        )
        topology.calibration = {}
    out = Path(args.out)
    write_site_file(topology, out, Path(args.cameras), str(args.log))
    picture = Path(args.picture) if args.picture else out.with_suffix(".png")
    draw_topology(topology, cameras, picture, frames)
    for line in evidence_lines(topology):
        print(line)
    print(f"wrote {out} and {picture}")
    return {"topology": topology, "out": str(out), "picture": str(picture), "tracklets": len(tracklets)}


def _first_frames(cfg) -> dict[str, np.ndarray]:
    from edge.calibrate import first_frame

    frames = {}
    for cam in cfg.cameras:
        try:
            frames[cam.id] = first_frame(cam.source)
        except Exception as exc:  # noqa: BLE001 - a picture without one camera's frame is still a picture
            log.warning("camera %s: no first frame for the picture (%s)", cam.id, exc)
    return frames


if __name__ == "__main__":
    main()
