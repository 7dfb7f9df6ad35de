"""``python -m edge.stream demo``: the demo site on JetStream, on this machine, started by itself.

A local ``nats-server`` from the installed package, two region hubs (``hub-a`` takes the lease,
``hub-b`` stands by) and the site demo's two edge nodes (``configs/site.demo``: node1 runs cam1,
node2 cam2 and cam3, every frame, ``stream:`` set, one scene clock), all separate processes. The
hubs decide the two nodes in lockstep (the demo hub YAML's ``lockstep: [node1, node2]``,
``edge/stream/lockstep.py``). Once hub-a has published some steps it is SIGKILLed; hub-b takes
over. Then one process runs the three cameras on the same frames, and the nodes' MOT files are
compared with its files row by row (``scripts/compare_site_run.py``, global ids up to renaming).
At the end: what the stream holds, which hub published how many steps, steps published twice
(none), each node's stream stats, and whether the site decided as one process. Everything lands
in ``--out`` (logs, the server's files, ``mot/`` and ``single/mot/``).
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

from core.ports import free_port
from edge.stream.names import HUB_HEADER, LEASE_BUCKET, PART_HEADER, STEP_HEADER, Region, lease_holder
from edge.stream.server import NatsServer

ROOT = Path(__file__).resolve().parents[2]
REGION = Region("demo")
NODES = ("node1", "node2")
EPOCH = 1000000.0  # the site demo's scene clock (configs/site.demo/node_base.yaml)


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
            step = (int(headers[STEP_HEADER]), int(headers.get(PART_HEADER, 0)))  # lockstep: parts of one position
            out["decisions"].append((step, headers.get(HUB_HEADER)))
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


def _node(url: str, name: str, out: Path, frames: Optional[int]) -> subprocess.Popen:
    """A site demo node streaming to the region: its ``site:`` (a ZeroMQ hub's) replaced by ``stream:``,
    the scene clock the site demo's (one for both nodes, as one process has)."""
    stream = f"stream={{servers: ['{url}'], region: {REGION.name}, node: {name}, epoch: {EPOCH}, flush_timeout_s: 300}}"
    cmd = [sys.executable, "-m", "edge.run", "--cameras", str(ROOT / "configs" / "site.demo" / f"{name}.yaml")]
    cmd += ["--report", str(out / f"{name}.json"), "site=null", stream, "publisher.enabled=false"]
    cmd += [f"outputs.mot_dir={out / 'mot'}"] + ([f"run.max_frames={frames}"] if frames else [])
    with open(out / f"{name}.log", "w") as log_file:
        return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)


def _same_as_one_process(out: Path, frames: Optional[int]) -> bool:
    """One process on the same frames (as ``configs/site.demo/run.sh`` runs it), its MOT files compared
    with the nodes' row by row; what differs is in ``compare.log``."""
    cmd = [sys.executable, "-m", "edge.run", "--cameras", str(ROOT / "configs" / "cams.demo_eval.yaml")]
    cmd += [f"outputs.mot_dir={out / 'single' / 'mot'}", "outputs.floor_map=null", "detector.batch=false"]
    cmd += ["publisher.enabled=false"] + ([f"run.max_frames={frames}"] if frames else [])
    with open(out / "single.log", "w") as log_file:
        if subprocess.run(cmd, stdout=log_file, stderr=subprocess.STDOUT, timeout=1800).returncode != 0:
            raise RuntimeError(f"stream demo: the single-process run failed (see {out / 'single.log'})")
    compare = [
        sys.executable,
        str(ROOT / "scripts" / "compare_site_run.py"),
        str(out / "mot"),
        str(out / "single" / "mot"),
    ]
    with open(out / "compare.log", "w") as log_file:
        same = subprocess.run(compare, stdout=log_file, stderr=subprocess.STDOUT, timeout=300).returncode == 0
    print(f"the site decided {'exactly' if same else 'NOT'} as one process on the same frames"
          f"{'' if same else ' (see ' + str(out / 'compare.log') + ')'}", flush=True)  # fmt: skip
    return same


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
        nodes = [_node(server.url, name, out, frames) for name in NODES]
        procs += nodes
        _wait(
            lambda: (
                len(asyncio.run(_look(server.url))["decisions"]) >= kill_after
                or any(n.poll() is not None for n in nodes)
            ),
            600,
            "steps",
        )
        a.send_signal(signal.SIGKILL)
        print("hub-a SIGKILLed", flush=True)
        took = _wait(lambda: asyncio.run(_look(server.url))["holder"] == "hub-b", 30, "hub-b taking over")
        print(f"hub-b holds the lease {took:.1f} s later", flush=True)
        for name, node in zip(NODES, nodes):
            if node.wait() != 0:
                raise RuntimeError(f"stream demo: {name} failed (see {out / f'{name}.log'})")
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
    result = {
        "summaries_in_stream": seen["summaries"],
        "node_stream": {n: json.loads((out / f"{n}.json").read_text()).get("stream", {}) for n in NODES},
        "steps_published": len(steps),
        "by_hub": {h: sum(1 for _, x in seen["decisions"] if x == h) for h in ("hub-a", "hub-b")},
        "published_twice": len(steps) - len(set(steps)),
        "takeover_s": round(took, 1),
        "same_as_one_process": _same_as_one_process(out, frames),
    }
    (out / "demo.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1), flush=True)
    return result
