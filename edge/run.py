"""``python -m edge.run --cameras cams.yaml``: run the multi-camera pipeline until stopped.

SIGINT/SIGTERM stop it cleanly: capture threads end, every open tracklet is closed (and gets
its identity), result files are flushed and the publisher socket is closed.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from trainer.cli import fail, setup_console_logging, stop_on_signals
from trainer.configio import ConfigError
from trainer.extras import EDGE_RUNTIME, TRAINING, MissingExtra, require

from .config import EdgeConfig, load_edge_config

log = logging.getLogger("edge.run")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m edge.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", required=True, help="camera file (see configs/cams.demo.yaml)")
    parser.add_argument("--report", default=None, help="write the final stats as JSON here")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. run.max_frames=100")
    args = parser.parse_args(argv)
    setup_console_logging()
    try:
        cfg = load_edge_config(args.cameras, args.overrides)
    except ConfigError as exc:
        fail(str(exc))
    log.info("%s", start_line(cfg))
    try:
        require("the edge runtime", EDGE_RUNTIME + (TRAINING if cfg.reid is not None and cfg.reid.backend == "torch" else ()))
    except MissingExtra as exc:
        fail(str(exc))
    from .pipeline import run_pipeline

    stop = stop_on_signals()
    try:
        report = run_pipeline(cfg, stop)
    except Exception as exc:  # noqa: BLE001 - one line for the operator, the trace in debug
        log.debug("pipeline failed", exc_info=True)
        operator_error = isinstance(exc, (OSError, RuntimeError, ValueError))  # a model file, a port, a value: the message says it
        fail(str(exc) if operator_error else f"{type(exc).__name__}: {exc}")
    log.info("done: %s", json.dumps({k: report[k] for k in ("cameras", "elapsed_s", "gallery") if k in report}))
    if report.get("errors"):
        log.error("camera errors: %s", report["errors"])
    if report.get("output_errors"):
        log.error("outputs switched off: %s", report["output_errors"])
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    return report


def start_line(cfg: EdgeConfig) -> str:
    """What this run will do, logged as soon as the config is loaded (models take a while to load)."""
    cams = ", ".join(c.id for c in cfg.cameras)
    reid = cfg.reid.model if cfg.reid else "none (tracking only)"
    endpoint = cfg.publisher.endpoint if cfg.publisher.enabled else "off"
    limits = [f"{cfg.run.max_frames} frames per camera"] if cfg.run.max_frames else []
    limits += [f"{cfg.run.duration_s:g} s"] if cfg.run.duration_s else []
    until = " or ".join(limits) or "the sources end or SIGINT/SIGTERM"
    return (f"starting: {len(cfg.cameras)} camera(s) [{cams}], detector {cfg.detector.weights}, reid {reid}, "
            f"publishing on {endpoint}, until {until}")


if __name__ == "__main__":
    main()
    sys.exit(0)
