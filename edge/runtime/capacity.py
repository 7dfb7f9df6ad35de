"""``python -m edge.run --cameras cams.yaml --capacity``: how much this box can take.

Before a site is filled with cameras, the question is how many, at which rates, this box can
process at full quality, on its own hardware, its own CPU share (a container's quota) and its own
cameras. This runs the user's camera file for a few seconds per setting of the governor (the
detector on every frame, every 2nd, every 4th), with every frame processed and nothing published
or written, and measures two limits per setting:

* the loop: frames per second the pipeline gets through when it never waits (the sum of its step
  times), which bounds a single box whatever its cores;
* the CPU: CPU seconds the whole process (capture and decoding threads included) spends per
  frame, against the CPUs it may use (:mod:`core.cpu_budget`).

The capacity is the smaller. Against what the cameras ask for (the sum of their rates), it
prints what fits at full quality and what the governor buys.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Optional

from core.cpu_budget import CpuBudget, read_cpu_budget
from edge.runtime.config import EdgeConfig
from edge.runtime.governor import every_nth
from edge.runtime.types import Frame

log = logging.getLogger(__name__)

SETTINGS = (1, 2, 4)


@dataclass(frozen=True)
class CapacityRow:
    """One governor setting measured: ``frames`` processed in ``step_s`` of pipeline time, using
    ``cpu_s`` CPU seconds of the whole process."""

    every: int
    frames: int
    step_s: float
    cpu_s: float

    @property
    def loop_fps(self) -> float:
        return self.frames / self.step_s if self.step_s > 0 else 0.0

    @property
    def cpu_per_frame(self) -> float:
        return self.cpu_s / self.frames if self.frames else float("inf")

    def capacity(self, cpus: float) -> float:
        """Frames per second this setting sustains within ``cpus`` CPUs."""
        return min(self.loop_fps, cpus / self.cpu_per_frame if self.cpu_per_frame > 0 else self.loop_fps)

    def as_dict(self, cpus: float) -> dict:
        return {
            "detect_every": self.every,
            "frames": self.frames,
            "loop_fps": round(self.loop_fps, 2),
            "cpu_ms_per_frame": round(1000 * self.cpu_per_frame, 2),
            "capacity_fps": round(self.capacity(cpus), 2),
        }


def measure_capacity(cfg: EdgeConfig, seconds: float = 15.0, settings: tuple[int, ...] = SETTINGS) -> list[CapacityRow]:
    """Run the camera file for ``seconds`` per setting (models loaded once) and measure each."""
    from edge.runtime.capture_loop import run_pipeline
    from edge.runtime.pipeline import EdgePipeline

    class TimedPipeline(EdgePipeline):
        """The pipeline, with the time its steps take summed: the loop's own limit."""

        step_s = 0.0

        def process(self, frames: list[Frame]) -> None:
            t = time.perf_counter()
            super().process(frames)
            self.step_s += time.perf_counter() - t

    rows, models = [], None
    for every in settings:
        run_cfg = _bench_config(cfg, seconds, every)
        pipeline = TimedPipeline(run_cfg, detector=models[0] if models else None, reid=models[1] if models else None)
        models = (pipeline.detector, pipeline.reid)
        pipeline.warmup()
        cpu = time.process_time()  # every thread of the process: capture, decoding, inference pools
        report = run_pipeline(run_cfg, pipeline=pipeline)
        row = CapacityRow(every, sum(report.get("processed", {}).values()), pipeline.step_s, time.process_time() - cpu)
        log.info(
            "capacity: detector on %s: %d frames, %.1f frames/s in the loop, %.1f ms CPU per frame",
            every_nth(every),
            row.frames,
            row.loop_fps,
            1000 * row.cpu_per_frame,
        )
        rows.append(row)
    return rows


def _bench_config(cfg: EdgeConfig, seconds: float, every: int) -> EdgeConfig:
    """The user's cameras, every frame processed as fast as the box goes (files and synthetic
    cameras in lockstep), nothing published or written, the governor fixed at ``every``."""
    c = cfg.model_copy(deep=True)
    for cam in c.cameras:
        cam.realtime = False
    c.publisher.enabled = False
    c.outputs.mot_dir = c.outputs.video_dir = c.outputs.floor_map = None
    c.governor.detect_every = every
    c.run.duration_s, c.run.max_frames = seconds, None
    c.site = None
    return c


def capacity_report(cfg: EdgeConfig, rows: list[CapacityRow], budget: Optional[CpuBudget] = None) -> tuple[str, dict]:
    """The table and the verdict a user reads, and the same as JSON."""
    budget = budget or read_cpu_budget()
    cpus = budget.cpus
    rates = {c.id: float(c.fps or 0) for c in cfg.cameras}
    asked = sum(rates.values())
    lines = [
        f"capacity of this box, {budget.describe()}:",
        "| detector on | loop frames/s | CPU ms per frame | frames/s within the CPU budget |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {every_nth(r.every)} | {r.loop_fps:.1f} | {1000 * r.cpu_per_frame:.1f} | {r.capacity(cpus):.1f} |"
        )
    lines += verdict(rows, rates, cpus)
    data = {
        "cpus": cpus,
        "budget": budget.describe(),
        "asked_fps": asked,
        "cameras": rates,
        "rows": [r.as_dict(cpus) for r in rows],
    }
    return "\n".join(lines), data


def verdict(rows: list[CapacityRow], rates: dict[str, float], cpus: float) -> list[str]:
    """What fits: the cameras' total rate against each setting's capacity."""
    if not rows:
        return []
    full = rows[0].capacity(cpus)
    asked = sum(rates.values())
    if not asked:
        return [
            f"at full quality this box takes {full:.1f} frames/s in all "
            "(the cameras set no fps: give each its rate to compare)"
        ]
    n = len(rates)
    out = [f"your {n} camera(s) ask for {asked:.1f} frames/s ({', '.join(f'{c} {r:g}' for c, r in rates.items())})."]
    if full >= asked:
        out.append(
            f"at full quality (detector on every frame) this box takes {full:.1f}: "
            f"all of them, with {full / asked - 1:.0%} to spare."
        )
        return out
    share = full / asked
    per_camera = max(rates.values())
    out.append(
        f"at full quality it takes {full:.1f} ({share:.0%}): "
        f"{int(round(full, 1) // per_camera)} camera(s) at {per_camera:g} fps, "
        f"or all of them at {share * per_camera:.1f} fps."
    )
    for r in rows[1:]:
        cap = r.capacity(cpus)
        if cap >= asked:
            out.append(
                f"with the detector on {every_nth(r.every)} "
                f"(governor.detect_every: {r.every}; auto chooses it when needed) "
                f"it takes {cap:.1f}: all of them."
            )
            return out
    best = rows[-1]
    out.append(
        f"even with the detector on {every_nth(best.every)} it takes {best.capacity(cpus):.1f}: "
        "fewer cameras, lower rates "
        f"or more compute."
    )
    return out
