"""The site on NATS JetStream, measured with real servers and real hub processes on loopback.

    python scripts/bench_stream.py --out runs/bench/stream [--trials 5] [--outage-messages 60000]

1. **Failover**: one server, hub A (active) and hub B (standby) as processes, a recorded node (a
   demo run's tracklet log) published at 100 messages a second; A is SIGKILLed halfway. Measured:
   seconds from the kill until B holds the lease and until B has published its first step, and,
   against the reference (the hub's step function over the log in this process), decided steps
   missing from the decision stream and steps on it twice. ``--trials`` times.
2. **A node cut off**: the node's server is killed, the node keeps sending ``--outage-messages``
   summaries messages (60 000: ten minutes of a node sending 100 a second), the server comes back
   on its files; measured: messages in the stream afterwards against messages sent (lost, twice)
   and how long the node took to catch up.
3. **Regions in parallel**: the log published into 1 and then 4 regions' streams; 1 and 4 hub
   processes read theirs at once; summaries messages per second, each and together (on this
   machine's cores: every hub runs its own engine).

Prints a table and writes ``stream.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.model_card import read_onnx_metadata  # noqa: E402
from edge.identity.config import MatchingConfig  # noqa: E402
from edge.identity.settings import settings_from_config  # noqa: E402
from edge.stream.names import HUB_HEADER, LEASE_BUCKET, STEP_HEADER, Region  # noqa: E402
from edge.stream.publisher import SummaryPublisher  # noqa: E402
from edge.stream.region_hub import RegionHub  # noqa: E402
from edge.stream.server import NatsServer, free_port  # noqa: E402
from edge.wire.recording import read_recording  # noqa: E402

DEMO = ROOT / "edge" / "demo_models"
MATCHING = {"min_embeddings": 2}


def node_log(out: Path, frames: int) -> list[list[bytes]]:
    """A demo run's tracklet log (lockstep, ``frames`` per camera): one node's messages."""
    path = out / "node.jsonl.gz"
    if not path.is_file():
        cmd = [sys.executable, "-m", "edge.run", "--cameras", str(ROOT / "configs" / "cams.demo_eval.yaml")]
        cmd += [f"run.max_frames={frames}", f"outputs.tracklet_log={path}", f"outputs.mot_dir={out / 'mot'}"]
        cmd += ["publisher.enabled=false"]
        subprocess.run(cmd, check=True, capture_output=True)
    return [parts for _, parts in read_recording(path)]


def reference(messages: list[list[bytes]], region: Region) -> dict[int, dict]:
    meta = read_onnx_metadata(str(DEMO / "reid.onnx"))
    assert meta is not None
    settings = settings_from_config(MatchingConfig(**MATCHING), meta.similarity, "reid.onnx", int(meta.embedding_dim))
    return RegionHub([], region, settings, "reference").decide_all(messages, "node1", "s1")


async def _published(url: str, region: Region, full: bool = False) -> list:
    """(step, body) of every decision message, with ``full`` also the hub and the time it was stored."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    out = []
    try:
        info = await js.stream_info(region.decisions_stream)
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(region.decisions_stream, seq)
            row = (int(msg.headers[STEP_HEADER]), json.loads(msg.data))
            if full:
                stored = datetime.fromisoformat(str(msg.time).replace("Z", "+00:00")).timestamp() if msg.time else 0.0
                row += (msg.headers.get(HUB_HEADER), stored)
            out.append(row)
    except Exception:  # noqa: BLE001 - no stream yet
        pass
    await nc.close()
    return out


async def _lease_holder(url: str, region: Region) -> str | None:
    import nats

    nc = await nats.connect(url)
    try:
        entry = await (await nc.jetstream().key_value(LEASE_BUCKET)).get(region.name)
        return entry.value.decode()
    except Exception:  # noqa: BLE001 - nobody holds it
        return None
    finally:
        await nc.close()


async def _stream_messages(url: str, stream: str) -> int:
    import nats

    nc = await nats.connect(url)
    info = await nc.jetstream().stream_info(stream)
    await nc.close()
    return int(info.state.messages)


def hub_process(out: Path, url: str, name: str, region: str) -> subprocess.Popen:
    hub_yaml = out / "hub.yaml"
    hub = {"reid_model": str(DEMO / "reid.onnx"), "store": None, "matching": MATCHING, "publisher": {"enabled": False}}
    hub_yaml.write_text(yaml.safe_dump(hub))
    cmd = [sys.executable, "-m", "edge.stream", "hub", "--config", str(hub_yaml), "--region", region]
    cmd += ["--servers", url, "--name", name, "--report", str(out / f"{name}.json")]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(condition, timeout_s: float) -> float:
    """Seconds until ``condition()`` (raises after ``timeout_s``)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError
        time.sleep(0.02)
    return time.monotonic() - start


def failover(out: Path, messages: list[list[bytes]], trial: int) -> dict:
    region = Region("hall")
    expected = reference(messages, region)
    folder = out / f"failover{trial}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with NatsServer(free_port(), folder / "store") as server:
        a = hub_process(folder, server.url, "hub-a", region.name)
        wait_for(lambda: asyncio.run(_lease_holder(server.url, region)) == "hub-a", 60)
        b = hub_process(folder, server.url, "hub-b", region.name)
        publisher = SummaryPublisher([server.url], region, "node1", "s1")  # the reference's session
        try:
            for i, parts in enumerate(messages):
                publisher.send(parts)
                time.sleep(0.01)
                if i == len(messages) // 2:
                    publisher.flush(10)
                    a.send_signal(signal.SIGKILL)
                    killed = time.time()
                    lease_s = wait_for(lambda: asyncio.run(_lease_holder(server.url, region)) == "hub-b", 30)
            publisher.flush(30)
            last = max(expected)
            wait_for(lambda: (asyncio.run(_published(server.url, region)) or [(0, 0)])[-1][0] == last, 60)
            got = asyncio.run(_published(server.url, region))
            by_b = [at for _, body, hub, at in asyncio.run(_published(server.url, region, full=True)) if hub == "hub-b"]
        finally:
            publisher.close(0)
            a.kill()
            b.send_signal(signal.SIGTERM)
            b.wait(20)
    steps = [s for s, _ in got]
    return {
        "trial": trial,
        "takeover_s": round(lease_s, 2),
        "first_publish_s": round(min(by_b) - killed, 2) if by_b else None,
        "steps_expected": len(expected),
        "lost": len(set(expected) - set(steps)),
        "twice": len(steps) - len(set(steps)),
        "different": sum(1 for s, body in got if expected.get(s) != body),
    }


def outage(out: Path, messages: list[list[bytes]], count: int) -> dict:
    region = Region("cutoff")
    folder = out / "outage"
    shutil.rmtree(folder, ignore_errors=True)
    port = free_port()
    server = NatsServer(port, folder / "store").start()
    publisher = SummaryPublisher([server.url], region, "node1", "s1", max_buffered=max(count, 1000) + 100)
    head = messages[:50]
    for parts in head:
        publisher.send(parts)
    publisher.flush(30)
    server.kill()
    for i in range(count):
        publisher.send(messages[50 + i % (len(messages) - 50)])
    buffered = publisher.buffered
    server = NatsServer(port, folder / "store").start()
    started = time.monotonic()
    done = publisher.flush(600)
    catch_up_s = time.monotonic() - started
    stats = publisher.stats()
    publisher.close(0)
    stored = asyncio.run(_stream_messages(server.url, region.summaries_stream))
    server.stop()
    sent = len(head) + count
    return {
        "messages_during_outage": count,
        "buffered_at_restore": buffered,
        "catch_up_s": round(catch_up_s, 1),
        "all_acknowledged": done,
        "in_stream": stored,
        "sent": sent,
        "lost": max(0, sent - stored),
        "twice": max(0, stored - sent),
        "dropped_by_bound": stats["dropped"],
    }


def regions(out: Path, messages: list[list[bytes]], counts: tuple[int, ...] = (1, 4)) -> list[dict]:
    rows = []
    for n in counts:
        folder = out / f"regions{n}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        with NatsServer(free_port(), folder / "store") as server:
            names = [f"r{i}" for i in range(n)]
            for name in names:  # each region's stream holds the node's log
                publisher = SummaryPublisher([server.url], Region(name), "node1", "s1")
                for parts in messages:
                    publisher.send(parts)
                publisher.flush(120)
                publisher.close(0)
            hubs = [hub_process(folder, server.url, f"hub-{name}", name) for name in names]
            last = max(reference_steps(messages))
            for name in names:  # read through: every hub has decided the last step of its region
                region = Region(name)
                wait_for(lambda r=region, n=last: (asyncio.run(_published(server.url, r)) or [(0, 0)])[-1][0] == n, 600)
            for h in hubs:
                h.send_signal(signal.SIGTERM)
                h.wait(20)
            spans = [json.loads((folder / f"hub-{name}.json").read_text())["read_span"] for name in names]
        seconds = max(s[1] for s in spans) - min(s[0] for s in spans)  # first message read to last, any hub
        each = [len(messages) / (s[1] - s[0]) for s in spans]
        total = n * len(messages)
        rows.append(
            {
                "regions": n,
                "messages": total,
                "seconds": round(seconds, 2),
                "per_s": round(total / seconds, 1),
                "per_s_each": [round(e, 1) for e in each],
            }
        )
    return rows


_REFERENCE_STEPS: list[int] = []


def reference_steps(messages: list[list[bytes]]) -> list[int]:
    if not _REFERENCE_STEPS:
        _REFERENCE_STEPS.extend(reference(messages, Region("hall")))
    return _REFERENCE_STEPS


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "stream"))
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--frames", type=int, default=600, help="frames per camera of the recorded node (lockstep)")
    parser.add_argument("--outage-messages", type=int, default=60000)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    messages = node_log(out, args.frames)
    print(f"recorded node: {len(messages)} messages", flush=True)
    trials = []
    for t in range(args.trials):
        trials.append(failover(out, messages, t))
        print(f"failover {t}: {trials[-1]}", flush=True)
    cut = outage(out, messages, args.outage_messages)
    print(f"outage: {cut}", flush=True)
    parallel = regions(out, messages)
    print(f"regions: {parallel}", flush=True)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "messages": len(messages),
        "failover": trials,
        "failover_summary": {
            "takeover_s_mean": round(statistics.mean(t["takeover_s"] for t in trials), 2),
            "takeover_s_max": max(t["takeover_s"] for t in trials),
            "first_publish_s_max": max(t["first_publish_s"] for t in trials),
            "lost": sum(t["lost"] for t in trials),
            "twice": sum(t["twice"] for t in trials),
            "different": sum(t["different"] for t in trials),
        },
        "outage": cut,
        "regions": parallel,
        "speedup_4_regions": round(parallel[-1]["per_s"] / parallel[0]["per_s"], 2),
    }
    (out / "stream.json").write_text(json.dumps(result, indent=1))
    s = result["failover_summary"]
    print("| measure | value |\n|---|---|")
    took = f"{s['takeover_s_mean']} / {s['takeover_s_max']} s"
    print(f"| failover: lease taken over after the kill (mean / max of {len(trials)}) | {took} |")
    print(f"| failover: first step published by the standby (max) | {s['first_publish_s_max']} s |")
    print(f"| failover: steps lost / twice / different | {s['lost']} / {s['twice']} / {s['different']} |")
    lost = f"{cut['lost']} / {cut['twice']}, {cut['catch_up_s']} s"
    print(f"| node cut off, {cut['messages_during_outage']} messages: lost / twice, catch-up | {lost} |")
    for r in parallel:
        print(f"| {r['regions']} region hub(s) reading at once | {r['per_s']} messages/s |")
    print(f"| speed-up with 4 regions ({os.cpu_count()} CPUs) | {result['speedup_4_regions']}x |")
    print(f"wrote {out / 'stream.json'}")
    return result


if __name__ == "__main__":
    main()
