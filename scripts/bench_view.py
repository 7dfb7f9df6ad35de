"""Measure the operator's view (``python -m edge.view``): its CPU at the demo load, its memory and
the page's responsiveness under an identity-event flood.

    python scripts/bench_view.py demo --duration 40 --screenshot docs/view.png
    python scripts/bench_view.py load --rate 100 --duration 60

``demo`` runs the 3-camera demo (``edge.run``, previews at 2 fps and crops on) and the view, as
separate processes, with a headless Chromium on the page; it reports the view's CPU share and
memory, and (``--screenshot``) saves the page with a journey over two cameras opened.
``load`` publishes ``--rate`` identity events per second (plus previews of 3 cameras at 2 fps)
from a synthetic feed for ``--duration`` seconds, with the page open, and samples every second
the view's memory and CPU and the page's DOM size, longest frame gap and the time a click on a
card takes to show its journey. Prints a table, writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FRAME_GAPS = """
if (!window.__gaps) { window.__gaps = {max: 0, last: performance.now()};
  const loop = (t) => {
    const g = window.__gaps; g.max = Math.max(g.max, t - g.last); g.last = t; requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop); }
const g = window.__gaps; const m = g.max; g.max = 0;
return [m, document.getElementsByTagName('*').length, document.querySelectorAll('.card').length,
        window.viewDebug.renders];
"""


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def open_browser():
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from edge.view.process import HEADLESS_CHROMIUM_FLAGS

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*HEADLESS_CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='view-bench-')}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def click_latency_ms(browser) -> float:
    """Click the first card and time until its journey is shown (ms)."""
    browser.execute_script(
        "document.getElementById('journey').hidden = true; document.getElementById('journey-title').textContent = ''"
    )
    t = time.perf_counter()
    # clicked inside the page: under a flood, an element found first may be replaced before a WebDriver click lands
    if not browser.execute_script("const c = document.querySelector('.card'); if (c) c.click(); return !!c"):
        return float("nan")
    while not browser.execute_script("return document.getElementById('journey-title').textContent !== ''"):
        if time.perf_counter() - t > 10:
            return float("inf")
        time.sleep(0.005)
    return (time.perf_counter() - t) * 1000


def load(args) -> dict:
    from edge.view.feed import Feed
    from edge.view.process import ViewProcess

    endpoint = f"tcp://127.0.0.1:{args.port}"
    view = ViewProcess("--events", endpoint)
    feed = Feed(endpoint, rate=args.rate, preview_fps=2.0, merge_every=10).start()
    browser = open_browser()
    samples = []
    try:
        browser.get(view.url)
        time.sleep(1.0)
        browser.execute_script(FRAME_GAPS)
        pid = view.proc.pid
        cpu0, t0 = proc_cpu_s(pid), time.monotonic()
        last_cpu, last_t = cpu0, t0
        while time.monotonic() - t0 < args.duration:
            time.sleep(1.0)
            gap, nodes, cards, renders = browser.execute_script(FRAME_GAPS)
            cpu, now = proc_cpu_s(pid), time.monotonic()
            samples.append(
                {
                    "t": round(now - t0, 1),
                    "view_rss_mb": round(proc_rss_mb(pid), 1),
                    "view_cpu_pct": round(100 * (cpu - last_cpu) / (now - last_t), 1),
                    "max_frame_gap_ms": round(gap, 1),
                    "dom_nodes": nodes,
                    "cards": cards,
                    "renders": renders,
                    "click_to_journey_ms": round(click_latency_ms(browser), 1),
                }
            )
            last_cpu, last_t = cpu, now
        latencies = browser.execute_script("return window.viewDebug.latencies")
        state = view.state()
    finally:
        browser.quit()
        feed.close()
        view.close()
    import numpy as np

    tail = samples[len(samples) // 2 :]
    return {
        "mode": "load",
        "rate": args.rate,
        "duration_s": args.duration,
        "published": feed.published,
        "identities_held": state["status"]["identities_held"],
        "crops_held": state["status"]["crops_held"],
        "view_rss_mb": {
            "start": samples[0]["view_rss_mb"],
            "max": max(s["view_rss_mb"] for s in samples),
            "end": samples[-1]["view_rss_mb"],
            "second_half_growth": round(tail[-1]["view_rss_mb"] - tail[0]["view_rss_mb"], 1),
        },
        "view_cpu_pct_mean": round(float(np.mean([s["view_cpu_pct"] for s in samples])), 1),
        "dom_nodes_max": max(s["dom_nodes"] for s in samples),
        "cards_max": max(s["cards"] for s in samples),
        "max_frame_gap_ms": {
            "p50": float(np.percentile([s["max_frame_gap_ms"] for s in samples], 50)),
            "max": max(s["max_frame_gap_ms"] for s in samples),
        },
        "click_to_journey_ms": {
            "p50": float(np.percentile([s["click_to_journey_ms"] for s in samples], 50)),
            "max": max(s["click_to_journey_ms"] for s in samples),
        },
        "publish_to_visible_ms": {
            "p50": round(1000 * float(np.percentile(latencies, 50)), 1),
            "p95": round(1000 * float(np.percentile(latencies, 95)), 1),
        }
        if latencies
        else None,
        "counters": state["status"]["counters"],
        "samples": samples,
    }


def demo(args) -> dict:
    from edge.view.process import ViewProcess

    endpoint = f"tcp://127.0.0.1:{args.port}"
    view = ViewProcess("--events", endpoint)
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.run",
            "--cameras",
            "configs/cams.demo.yaml",
            f"publisher.endpoint={endpoint}",
            "publisher.preview_fps=2",
            "publisher.crops=true",
            "outputs.mot_dir=null",
            "outputs.floor_map=null",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    browser = open_browser()
    try:
        browser.get(view.url)
        view.wait_for(
            lambda s: sum(c["frame_seq"] for c in s["cameras"]) >= 6, timeout=120, what="previews from the demo"
        )
        pid = view.proc.pid
        cpu0, rss, t0 = proc_cpu_s(pid), [], time.monotonic()
        while time.monotonic() - t0 < args.duration and run.poll() is None:
            time.sleep(1.0)
            rss.append(proc_rss_mb(pid))
        elapsed = time.monotonic() - t0
        cpu = proc_cpu_s(pid) - cpu0
        state = view.state()
        latencies = browser.execute_script("return window.viewDebug.latencies")
        if args.screenshot:
            two = [c for c in state["identities"] if len(c["cameras"]) >= 2 and c["crop"] and c["merged_into"] is None]
            if two:
                best = max(two, key=lambda c: c["sightings"])
                browser.execute_script(f"selected = {int(best['global_id'])}; refreshJourney(true);")
                time.sleep(1.5)
            browser.execute_script("window.scrollTo(0, 0)")
            time.sleep(0.5)
            browser.save_screenshot(args.screenshot)
    finally:
        browser.quit()
        run.terminate()
        run.wait(30)
        view.close()
    import numpy as np

    return {
        "mode": "demo",
        "measured_s": round(elapsed, 1),
        "view_cpu_pct": round(100 * cpu / elapsed, 1),
        "view_rss_mb_max": round(max(rss), 1) if rss else None,
        "identities": len(state["identities"]),
        "identities_too_short": sum(1 for c in state["identities"] if c["sealed"]),
        "publish_to_visible_ms": {
            "n": len(latencies),
            "p50": round(1000 * float(np.percentile(latencies, 50)), 1),
            "p95": round(1000 * float(np.percentile(latencies, 95)), 1),
        }
        if latencies
        else None,
        "cameras": {
            c["id"]: {"frame_seq": c["frame_seq"], "preview_fps": c["preview_fps"], "fps": c["fps"]}
            for c in state["cameras"]
        },
        "counters": state["status"]["counters"],
        "screenshot": args.screenshot,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("demo", "load"))
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=100.0, help="load: identity events per second")
    parser.add_argument("--port", type=int, default=5591, help="ZeroMQ port of the publisher")
    parser.add_argument("--screenshot", default=None, help="demo: save the page here")
    parser.add_argument("--out", default=None, help="JSON (default docs/bench/view_<mode>.json)")
    args = parser.parse_args()
    result = demo(args) if args.mode == "demo" else load(args)
    out = Path(args.out or REPO / "docs" / "bench" / f"view_{args.mode}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    summary = {k: v for k, v in result.items() if k != "samples"}
    width = max(len(k) for k in summary)
    print("\n".join(f"{k:<{width}}  {json.dumps(v)}" for k, v in summary.items()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
