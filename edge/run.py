"""``python -m edge.run --cameras cams.yaml``: run the multi-camera pipeline until stopped.

SIGINT/SIGTERM stop it cleanly: capture threads end, every open tracklet is closed (and gets
its identity), result files are flushed and the publisher socket is closed. A signal that comes
while the models are still loading ends the run at once: nothing has been processed yet.

Exit status: 0 when at least one camera delivered frames; 1 when none ever did (each camera's
reason on the one ``error:`` line) or the run was stopped while loading; 2 for a bad config
(a video file that does not decode, an output folder that cannot be written...), a missing
extra or a model or port that cannot be used, found before or while loading.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import signal
import sys
import threading

from core.cli import fail, setup_console_logging
from core.configio import ConfigError
from core.cpu_budget import limit_threads, read_cpu_budget
from core.extras import EDGE_RUNTIME, TRACKING, TRAINING, ULTRALYTICS, MissingExtra, require
from edge.runtime.config import ULTRALYTICS_TRACKERS, EdgeConfig, load_edge_config
from edge.runtime.source_diagnosis import quiet_opencv

log = logging.getLogger("edge.run")


class Interrupted(BaseException):
    """SIGINT/SIGTERM while loading (a BaseException, so no library's ``except Exception`` inside
    a model load swallows it)."""


class SignalStop:
    """SIGINT and SIGTERM: before :meth:`loaded` they end the run at once (importing and loading
    the models takes ~8 s on a busy CPU, and there is nothing to flush yet); after, they set
    :attr:`event`, and the pipeline ends its loop, closes open tracklets and flushes results; a
    second one ends the process at once (a site node may wait for its hub's final ids)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.loading = True
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._handle)

    def loaded(self) -> None:
        self.loading = False

    def _handle(self, signum: int, _frame) -> None:
        if (
            self.event.is_set() and not self.loading
        ):  # a second signal: the flush (a site node waiting for its hub) is not waited for
            log.error("second %s: ending now, results not flushed", signal.Signals(signum).name)
            exit_now(1)
        self.event.set()
        if self.loading:
            self.loading = False  # a second signal while this one unwinds does not raise again
            raise Interrupted(
                f"stopped by {signal.Signals(signum).name} while loading, before any camera delivered a frame"
            )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m edge.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cameras", required=True, help="camera file (see configs/cams.demo.yaml)")
    parser.add_argument("--report", default=None, help="write the final stats as JSON here")
    parser.add_argument(
        "--capacity",
        nargs="?",
        type=float,
        const=15.0,
        default=None,
        metavar="SECONDS",
        help="measure how many frames per second this box can take on these cameras (SECONDS per setting, "
        "default 15), print it and exit (edge/runtime/capacity.py)",
    )
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, e.g. run.max_frames=100")
    args = parser.parse_args(argv)
    setup_console_logging()
    quiet_opencv()  # OpenCV's and FFmpeg's own multi-line output; our lines carry the reasons
    stop = SignalStop()
    try:
        report = _load_and_run(args, stop)
    except Interrupted as exc:
        fail(str(exc), code=1)
    if "capacity" not in report:
        log.info("done: %s", json.dumps({k: report[k] for k in ("cameras", "elapsed_s", "gallery") if k in report}))
    delivered = any(report.get("processed", {}).values())
    if report.get("errors") and delivered:  # else the error line below says it
        log.error("camera errors: %s", report["errors"])
    if report.get("output_errors"):
        log.error("outputs switched off: %s", report["output_errors"])
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    if not delivered:
        fail(no_frames_line(report), code=1)
    return report


def runtime_needs(cfg: EdgeConfig) -> tuple[tuple[str, str], ...]:
    """The modules this camera file needs, each with the extra that installs it."""
    ultralytics = cfg.detector.runs_on() == "ultralytics" or cfg.tracker.kind in ULTRALYTICS_TRACKERS
    torch_reid = cfg.reid is not None and cfg.reid.backend == "torch"
    return (
        EDGE_RUNTIME
        + (ULTRALYTICS if ultralytics else ())
        + (TRACKING if cfg.tracker.kind not in ULTRALYTICS_TRACKERS else ())
        + (TRAINING if torch_reid else ())
    )


def _load_and_run(args: argparse.Namespace, stop: SignalStop) -> dict:
    try:
        cfg = load_edge_config(args.cameras, args.overrides)
    except ConfigError as exc:
        fail(str(exc))
    log.info("%s", start_line(cfg))
    try:
        require("the edge runtime", runtime_needs(cfg))
    except MissingExtra as exc:
        fail(str(exc))
    budget = read_cpu_budget()  # before PyTorch, BLAS and OpenMP load: they size their pools once
    limit_threads(budget)
    log.info("compute: %s", budget.describe())
    from edge.runtime.capture_loop import run_pipeline

    try:
        if args.capacity:
            return _capacity(cfg, args.capacity, budget)
        return run_pipeline(cfg, stop.event, on_loaded=stop.loaded)
    except Exception as exc:  # noqa: BLE001 - one line for the operator, the trace in debug
        log.debug("pipeline failed", exc_info=True)
        operator_error = isinstance(
            exc, (OSError, RuntimeError, ValueError)
        )  # a model file, a port, a value: the message says it
        fail(str(exc) if operator_error else f"{type(exc).__name__}: {exc}")
        raise  # not reached: fail exits


def _capacity(cfg: EdgeConfig, seconds: float, budget) -> dict:
    """``--capacity``: the table and verdict on stdout; the report holds them as JSON."""
    from edge.runtime.capacity import capacity_report, measure_capacity

    rows = measure_capacity(cfg, seconds)
    text, data = capacity_report(cfg, rows, budget)
    print(text, flush=True)
    return {"capacity": data, "processed": {"all cameras": sum(r.frames for r in rows)}}


def no_frames_line(report: dict) -> str:
    """The one line of a run in which no camera delivered a frame: each camera's last reason."""
    errors = report.get("errors") or {}
    reasons = "; ".join(f"{cam}: {why}" for cam, why in errors.items()) or "stopped before the first frame"
    return f"no camera delivered a frame ({reasons})"


def start_line(cfg: EdgeConfig) -> str:
    """What this run will do, logged as soon as the config is loaded (models take a while to load)."""
    cams = ", ".join(c.id for c in cfg.cameras)
    reid = cfg.reid.model if cfg.reid else "none (tracking only)"
    endpoint = cfg.publisher.endpoint if cfg.publisher.enabled else "off"
    limits = [f"{cfg.run.max_frames} frames per camera"] if cfg.run.max_frames else []
    limits += [f"{cfg.run.duration_s:g} s"] if cfg.run.duration_s else []
    until = " or ".join(limits) or "the sources end or SIGINT/SIGTERM"
    return (
        f"starting: {len(cfg.cameras)} camera(s) [{cams}], detector {cfg.detector.weights}, reid {reid}, "
        f"publishing on {endpoint}, until {until}"
    )


def exit_now(code: int) -> None:
    """Run the exit handlers, flush and end the process without the interpreter's teardown of
    the modules PyTorch, ONNX Runtime and Ultralytics loaded (1.5-2.3 s measured after the run
    was over, most of the time Ctrl-C took; the exit handlers themselves take 0.03 s)."""
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    try:
        main()
        status = 0
    except SystemExit as exc:  # fail() and argparse have printed their line
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    exit_now(status)
