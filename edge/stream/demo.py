"""``python -m edge.stream demo``: the demo site on JetStream, on this machine, started by itself.

A local ``nats-server`` from the installed package, two region hubs (``hub-a`` takes the lease,
``hub-b`` stands by) and one edge node (the demo world's three cameras, every frame, ``stream:``
set) as separate processes. Once hub-a has published some steps it is SIGKILLed; hub-b takes over.
At the end: what the stream holds, which hub published how many steps, steps published twice
(none), and the node's stream stats. Everything lands in ``--out`` (logs, the server's files).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from edge.stream.names import HUB_HEADER, LEASE_BUCKET, STEP_HEADER, Region, lease_holder
from edge.stream.server import NatsServer, free_port

ROOT = Path(__file__).resolve().parents[2]
REGION = Region("demo")


async def _look(url: str) -> dict[str, Any]:
    """The lease holder, the summaries stored and every decision message's (step, hub)."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    out: dict[str, Any] = {"holder": None, "summaries": 0, "decisions": []}
    try:
        entry = await (await js.key_value(LEASE_BUCKET)).get(REGION.name)
        out["holder"] = lease_holder(entry.value)[0]
    except Exception:  # noqa: BLE001 - nobody holds it (yet)
        pass
    try:
        out["summaries"] = (await js.stream_info(REGION.summaries_stream)).state.messages
        info = await js.stream_info(REGION.decisions_stream)
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            headers = (await js.get_msg(REGION.decisions_stream, seq)).headers or {}
            out["decisions"].append((int(headers[STEP_HEADER]), headers.get(HUB_HEADER)))
    except Exception:  # noqa: BLE001 - the streams are not made yet
        pass
    await nc.close()
    return out


def _hub(url: str, name: str, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edge.stream", "hub", "--config", str(ROOT / "configs" / "site.demo" / "hub.yaml")]
    cmd += ["--region", REGION.name, "--servers", url, "--name", name, "--report", str(out / f"{name}.json")]
    cmd += [f"publisher.endpoint=tcp://127.0.0.1:{free_port()}", "store=null"]
    with open(out / f"{name}.log", "w") as log_file:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)


def _wait(condition, timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"stream demo: {what} not within {timeout_s:g} s")
        time.sleep(0.1)
    return time.monotonic() - start


def run_demo(out: Path, frames: Optional[int], kill_after: int = 20) -> dict[str, Any]:
    """See the module docstring; hub-a is killed once ``kill_after`` steps are published."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    server = NatsServer(free_port(), out / "nats").start()
    procs: list[subprocess.Popen] = []
    try:
        print(f"nats-server (JetStream) on {server.url}, files in {out / 'nats'}", flush=True)
        a = _hub(server.url, "hub-a", out)
        procs.append(a)
        _wait(lambda: asyncio.run(_look(server.url))["holder"] == "hub-a", 60, "hub-a active")
        b = _hub(server.url, "hub-b", out)
        procs.append(b)
        print("hub-a holds region demo's lease; hub-b stands by", flush=True)
        stream = f"stream={{servers: ['{server.url}'], region: {REGION.name}, node: node1}}"
        cmd = [sys.executable, "-m", "edge.run", "--cameras", str(ROOT / "configs" / "cams.demo_eval.yaml")]
        cmd += ["--report", str(out / "node.json"), stream, "publisher.enabled=false", f"outputs.mot_dir={out / 'mot'}"]
        cmd += [f"run.max_frames={frames}"] if frames else []
        with open(out / "node.log", "w") as log_file:
            node = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
        procs.append(node)
        _wait(
            lambda: len(asyncio.run(_look(server.url))["decisions"]) >= kill_after or node.poll() is not None,
            600,
            "steps",
        )
        a.send_signal(signal.SIGKILL)
        print("hub-a SIGKILLed", flush=True)
        took = _wait(lambda: asyncio.run(_look(server.url))["holder"] == "hub-b", 30, "hub-b taking over")
        print(f"hub-b holds the lease {took:.1f} s later", flush=True)
        if node.wait() != 0:
            raise RuntimeError(f"stream demo: the node failed (see {out / 'node.log'})")
        last: list[Any] = []

        def settled() -> bool:  # the decision stream stopped growing for 3 s
            now = asyncio.run(_look(server.url))["decisions"]
            if last and last[0] == len(now) and time.monotonic() - last[1] >= 3.0:
                return True
            if not last or last[0] != len(now):
                last[:] = [len(now), time.monotonic()]
            return False

        _wait(settled, 120, "the hubs deciding the node's run")
        seen = asyncio.run(_look(server.url))
        b.send_signal(signal.SIGTERM)
        try:
            b.wait(20)
        except subprocess.TimeoutExpired:
            pass  # killed below
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        server.stop()
    steps = [s for s, _ in seen["decisions"]]
    node_report = json.loads((out / "node.json").read_text())
    result = {
        "summaries_in_stream": seen["summaries"],
        "node_stream": node_report.get("stream", {}),
        "steps_published": len(steps),
        "by_hub": {h: sum(1 for _, x in seen["decisions"] if x == h) for h in ("hub-a", "hub-b")},
        "published_twice": len(steps) - len(set(steps)),
        "takeover_s": round(took, 1),
    }
    (out / "demo.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1), flush=True)
    return result
