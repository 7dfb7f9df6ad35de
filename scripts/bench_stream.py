"""The site on NATS JetStream, measured with real servers and real hub processes on loopback.

    python scripts/bench_stream.py --out runs/bench/stream [--trials 5] [--outage-messages 60000]
    python scripts/bench_stream.py --out runs/bench/stream_cp --only checkpoints [--checkpoint-past 3000 10000 30000]

1. **Failover**: one server, hub A (active) and hub B (standby) as processes, a recorded node (a
   demo run's tracklet log) published at 100 messages a second; A is SIGKILLed halfway. Measured:
   seconds from the kill until B holds the lease and until B has published its first step, and,
   against the reference (the hub's step function over the log in this process), decided steps
   missing from the decision stream and steps on it twice. ``--trials`` times.
2. **A node cut off**: the node's server is killed, the node keeps sending ``--outage-messages``
   summaries messages (60 000: ten minutes of a node sending 100 a second), the server comes back
   on its files; measured: messages in the stream afterwards against messages sent (lost, twice)
   and how long the node took to catch up.
2b. **A node's link cut silently** (``--only silent-cut``, ``--cut-s`` 600): the node publishes 100
   messages a second in real time through a link (``sim/link_cut.py``) that is cut for
   ``--cut-s`` seconds: nothing crosses, nothing is refused, as a pulled cable; measured: lost,
   twice, the node's outages, and how long it took to catch up after the link came back.
3. **Regions in parallel**: the log published into 1 and then 4 regions' streams; 1 and 4 hub
   processes read theirs at once; summaries messages per second, each and together (on this
   machine's cores: every hub runs its own engine), and what each hub and the server spent in CPU
   time meanwhile: a projection for a machine with a core per hub (:func:`projected_speedup`),
   which a machine with fewer cores cannot measure.
4. **Checkpoints** (``edge/stream/checkpoint.py``): in this process, a region hub with
   ``--checkpoint-past`` N past identities (``scripts/bench_hub.py``'s synthetic ones, FAISS gallery)
   after a few synthetic steps: its checkpoint's size, the time to write it (``dump``: the hub's
   loop waits for it) and to load it, the time to put it into and get it from a real server's
   object store, and whether a hub loaded from it then decides what the writer decides over more
   steps. With real processes: hub A decides the whole recorded node with ``--checkpoint-every 1``
   and is stopped (SIGTERM: it writes its last checkpoint); hub B starts: seconds until it says it
   continues from the checkpoint and until it is at the stream's last position; hub C
   (``--checkpoint-every 0``) reads the region from its start: seconds until it is there.

``--only`` runs some of them. Prints a table and writes ``stream.json`` into ``--out``.
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
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.model_card import read_onnx_metadata  # noqa: E402
from core.ports import free_port  # noqa: E402
from edge.identity.config import MatchingConfig  # noqa: E402
from edge.identity.settings import settings_from_config  # noqa: E402
from edge.stream.checkpoint import CHECKPOINT_BUCKET, checkpoint_store, dump, load  # noqa: E402
from edge.stream.names import HUB_HEADER, LEASE_BUCKET, STEP_HEADER, Region, lease_holder  # noqa: E402
from edge.stream.publisher import SummaryPublisher  # noqa: E402
from edge.stream.region_steps import GallerySettings, RegionSteps  # noqa: E402
from edge.stream.server import NatsServer  # noqa: E402
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
    return RegionSteps(region, settings).decide_all(messages, "node1", "s1")


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
        return lease_holder(entry.value)[0]
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


def hub_process(
    out: Path, url: str, name: str, region: str, *extra: str, stderr: int = subprocess.DEVNULL
) -> subprocess.Popen:
    hub_yaml = out / "hub.yaml"
    hub = {"reid_model": str(DEMO / "reid.onnx"), "store": None, "matching": MATCHING, "publisher": {"enabled": False}}
    hub_yaml.write_text(yaml.safe_dump(hub))
    cmd = [sys.executable, "-m", "edge.stream", "hub", "--config", str(hub_yaml), "--region", region]
    cmd += ["--servers", url, "--name", name, "--report", str(out / f"{name}.json"), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


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
    delivery = after_the_outage(publisher, server.url, region, len(head) + count)
    server.stop()
    return {"messages_during_outage": count, "buffered_at_restore": buffered, **delivery}


def after_the_outage(publisher: SummaryPublisher, url: str, region: Region, sent: int) -> dict:
    """The link is back: how long the node takes to send what it kept, and what the stream then holds."""
    started = time.monotonic()
    done = publisher.flush(600)
    catch_up_s = time.monotonic() - started
    stats = publisher.stats()
    publisher.close(0)
    stored = asyncio.run(_stream_messages(url, region.summaries_stream))
    return {
        "catch_up_s": round(catch_up_s, 1),
        "all_acknowledged": done,
        "in_stream": stored,
        "sent": sent,
        "lost": max(0, sent - stored),
        "twice": max(0, stored - sent),
        "outages": stats["outages"],
        "dropped_by_bound": stats["dropped"],
    }


def silent_cut(out: Path, messages: list[list[bytes]], cut_s: float, rate: float = 100.0) -> dict:
    """A node sending ``rate`` messages a second through a link cut for ``cut_s`` seconds (real time)."""
    from sim.link_cut import LinkCut

    region = Region("silent")
    folder = out / "silent_cut"
    shutil.rmtree(folder, ignore_errors=True)
    with NatsServer(free_port(), folder / "store") as server, LinkCut(server.port) as link:
        publisher = SummaryPublisher([link.url], region, "node1", "s1", max_buffered=int(rate * cut_s) + 10_000)
        sent, started = 0, time.monotonic()

        def send_until(t_end: float) -> int:
            count = 0
            while time.monotonic() < t_end:
                publisher.send(messages[(sent + count) % len(messages)])
                count += 1
                time.sleep(max(0.0, started + (sent + count) / rate - time.monotonic()))
            return count

        sent += send_until(time.monotonic() + 10.0)
        link.cut()
        cut_at = time.monotonic()
        sent += send_until(cut_at + cut_s)
        buffered = publisher.buffered
        link.restore()
        delivery = after_the_outage(publisher, server.url, region, sent)
    return {"cut_s": cut_s, "rate_per_s": rate, "buffered_at_restore": buffered, **delivery}


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
            server_cpu = cpu_seconds(server.process.pid)
            hubs = [hub_process(folder, server.url, f"hub-{name}", name) for name in names]
            last = max(reference_steps(messages))
            for name in names:  # read through: every hub has decided the last step of its region
                region = Region(name)
                wait_for(lambda r=region, n=last: (asyncio.run(_published(server.url, r)) or [(0, 0)])[-1][0] == n, 600)
            for h in hubs:
                h.send_signal(signal.SIGTERM)
                h.wait(20)
            server_cpu = cpu_seconds(server.process.pid) - server_cpu
            reports = [json.loads((folder / f"hub-{name}.json").read_text()) for name in names]
        spans = [r["read_span"] for r in reports]
        seconds = max(s[1] for s in spans) - min(s[0] for s in spans)  # first message read to last, any hub
        each = [len(messages) / (s[1] - s[0]) for s in spans]
        cpu_each = [r["cpu_span"][1] - r["cpu_span"][0] for r in reports]
        total = n * len(messages)
        rows.append(
            {
                "regions": n,
                "messages": total,
                "seconds": round(seconds, 2),
                "per_s": round(total / seconds, 1),
                "per_s_each": [round(e, 1) for e in each],
                "hub_cpu_s_each": [round(c, 2) for c in cpu_each],
                "per_cpu_s_each": [round(len(messages) / c, 1) for c in cpu_each],  # messages per CPU second
                "hub_busy_each": [round(c / (s[1] - s[0]), 2) for c, s in zip(cpu_each, spans)],
                "server_cpu_s": round(server_cpu, 2),
            }
        )
    return rows


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def projected_speedup(rows: list[dict]) -> dict:
    """What ``n`` hubs would reach with a core each, from what each costs in CPU here: ``n`` times
    the messages a hub decides per CPU second with ``n`` at once, over one alone's per wall second
    (its wall time includes its waits on the server; hubs that share cores do not show that). It
    holds while the server has a core of its own and is not saturated (its busy share is given)."""
    one, many = rows[0], rows[-1]
    n = many["regions"]
    per_cpu = sum(many["per_cpu_s_each"]) / n
    return {
        "regions": n,
        "projected_speedup": round(n * per_cpu * one["hub_busy_each"][0] / one["per_s"], 2),
        "cpu_per_message_ratio": round(one["per_cpu_s_each"][0] / per_cpu, 2),  # > 1: a hub costs more with n
        "server_busy": round(many["server_cpu_s"] / many["seconds"], 2),
    }


def checkpoint_sizes(out: Path, past_counts: list[int], steps: int = 30, after: int = 60) -> list[dict]:
    """In this process: a region hub with ``n`` past identities decides ``steps`` synthetic steps,
    its checkpoint is written, loaded into a fresh hub, put into and got from a real server's
    object store; writer and loaded hub then decide ``after`` more steps, which must agree."""
    from bench_hub import CAMS, KEEP_ABOVE, MODEL, past_identities, workload

    from edge.wire.site_protocol import encode, encode_tracklets

    meta = read_onnx_metadata(str(MODEL))
    assert meta is not None and meta.embedding_dim
    dim, region = int(meta.embedding_dim), Region("bench")
    rows = []
    folder = out / "checkpoint_sizes"
    shutil.rmtree(folder, ignore_errors=True)
    with NatsServer(free_port(), folder / "store") as server:
        for n in past_counts:
            rng = np.random.default_rng(n)
            matching = MatchingConfig(max_identities=n + KEEP_ABOVE)
            settings = settings_from_config(matching, meta.similarity, str(MODEL), dim)

            def make(name: str, settings=settings) -> RegionSteps:
                return RegionSteps(region, settings, embedding_dim=dim, gallery=GallerySettings())

            writer = make("writer")
            idents, past = past_identities(n, dim, rng)
            writer.engine.restore(idents, n + 1)
            writer.gallery.upsert(range(1, n + 1), past)
            hello = encode("hello", {"node": "n", "session": "s", "cameras": CAMS, "embedding_dim": dim})
            made = enumerate(workload(past, steps + after, rng), start=1)
            log = [hello] + [encode_tracklets(k, now, items) for k, (now, items) in made]
            for position, parts in enumerate(log[: steps + 1], start=1):
                writer.decide(position, parts, "n", "s")
            t0 = time.perf_counter()
            blob = dump(region, writer.state(), writer.fingerprint)
            dump_s = time.perf_counter() - t0
            put_s, got = asyncio.run(_put_get(server.url, region, blob))
            reader = make("reader")
            t0 = time.perf_counter()
            state = load(got, region, reader.fingerprint)
            assert state is not None, "the checkpoint was not loaded"
            reader.load(state)
            load_s = time.perf_counter() - t0
            same, compared = got == blob, 0
            for position, parts in enumerate(log[steps + 1 :], start=steps + 2):
                a, b = writer.decide(position, parts, "n", "s"), reader.decide(position, parts, "n", "s")
                same = same and (a is None) == (b is None) and (a is None or json.loads(a) == json.loads(b))
                compared += a is not None
            rows.append(
                {
                    "past_identities": n,
                    "identities": len(writer.engine.identities),
                    "position": state.position,
                    "mb": round(len(blob) / 1e6, 1),
                    "dump_s": round(dump_s, 3),
                    "load_s": round(load_s, 3),
                    "store_put_s": round(put_s[0], 3),
                    "store_get_s": round(put_s[1], 3),
                    "store_get_writeinto_s": round(put_s[2], 3),
                    "steps_after": after,
                    "decisions_compared": compared,
                    "same_decisions": bool(same),
                }
            )
            print(f"checkpoint {n}: {rows[-1]}", flush=True)
            del writer, reader, state, blob, got
    shutil.rmtree(folder, ignore_errors=True)  # the object store's files: big, measured
    assert all(r["same_decisions"] for r in rows), "a hub loaded from a checkpoint decided otherwise"
    return rows


async def _put_get(url: str, region: Region, blob: bytes) -> tuple[tuple[float, float, float], bytes]:
    """Seconds to put ``blob`` into the checkpoints' object store and to get it back (as the hub
    does: ``read_checkpoint``; and into a buffer, ``writeinto``: nats-py's plain ``get`` joins the
    chunks with ``bytes +=``), and what came back."""
    import io

    import nats

    nc = await nats.connect(url)
    store = await checkpoint_store(nc.jetstream())
    t0 = time.perf_counter()
    await store.put(region.name, blob)
    put_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = (await store.get(region.name)).data
    get_s = time.perf_counter() - t0
    t0, into = time.perf_counter(), io.BytesIO()
    await store.get(region.name, writeinto=into)
    into_s = time.perf_counter() - t0
    assert into.getvalue() == got
    await nc.close()
    return (put_s, get_s, into_s), got


async def _checkpoint_position(url: str, region: Region) -> int:
    """The position of the region's stored checkpoint (0: none)."""
    import nats

    nc = await nats.connect(url)
    try:
        found = await (await nc.jetstream().object_store(CHECKPOINT_BUCKET)).get(region.name)
        return int(json.loads(found.data.partition(b"\n")[0])["position"])
    except Exception:  # noqa: BLE001 - none yet
        return 0
    finally:
        await nc.close()


async def _last_seq(url: str, stream: str) -> int:
    import nats

    nc = await nats.connect(url)
    info = await nc.jetstream().stream_info(stream)
    await nc.close()
    return int(info.state.last_seq)


class HubLog:
    """A hub process whose log lines are read as they come, each with the wall clock it came at."""

    def __init__(self, folder: Path, url: str, name: str, region: str, *extra: str):
        self.name, self.report = name, folder / f"{name}.json"
        self.started = time.time()
        self.proc = hub_process(folder, url, name, region, *extra, stderr=subprocess.PIPE)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.time(), line.rstrip("\n")))

    def when(self, text: str) -> float | None:
        """Seconds from the start until the first line holding ``text`` (None: not yet)."""
        return next((at - self.started for at, line in list(self.lines) if text in line), None)

    def position(self) -> int:
        """The position in the hub's latest stats line (every few seconds; -1: none yet)."""
        mark = f"stream: hub {self.name}: "
        stats = [line.split(mark, 1)[1] for _, line in list(self.lines) if mark in line]
        return int(json.loads(stats[-1])["position"]) if stats else -1

    def stop(self) -> dict:
        """SIGTERM, then its report."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self._reader.join(5)
        return json.loads(self.report.read_text())

    def caught_up_s(self, report: dict) -> float:
        """Seconds from the start until it was at its last position: the last message it read, or
        (nothing left to read) when it subscribed after its checkpoint."""
        ready = self.when("reads region")
        assert ready is not None
        return max(ready, report["read_span"][1] - self.started if report["read_span"] else 0.0)


def restart(out: Path, messages: list[list[bytes]]) -> dict:
    """Hub A decides the whole log with checkpoints and stops cleanly; hub B continues from its
    checkpoint; hub C (no checkpoints) reads the region from its start."""
    region = Region("hall")
    last_step = max(reference_steps(messages))
    folder = out / "checkpoints"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    found = "continues region hall from its checkpoint at position"
    with NatsServer(free_port(), folder / "store") as server:
        publisher = SummaryPublisher([server.url], region, "node1", "s1")
        for parts in messages:
            publisher.send(parts)
        publisher.flush(120)
        publisher.close(0)
        last = asyncio.run(_last_seq(server.url, region.summaries_stream))
        hubs = []
        try:
            a = HubLog(folder, server.url, "hub-a", region.name, "--checkpoint-every", "1")
            hubs.append(a)
            wait_for(lambda: (asyncio.run(_published(server.url, region)) or [(0, 0)])[-1][0] == last_step, 300)
            wait_for(lambda: asyncio.run(_checkpoint_position(server.url, region)) == last, 60)
            report_a = a.stop()
            checkpoint_at = asyncio.run(_checkpoint_position(server.url, region))
            b = HubLog(folder, server.url, "hub-b", region.name, "--checkpoint-every", "1")
            hubs.append(b)
            wait_for(lambda: b.when(found) is not None, 120)
            continues_s = b.when(found)
            wait_for(lambda: b.position() == last, 120)
            report_b = b.stop()
            c = HubLog(folder, server.url, "hub-c", region.name, "--checkpoint-every", "0")
            hubs.append(c)
            wait_for(lambda: c.position() == last, 300)
            report_c = c.stop()
            got = asyncio.run(_published(server.url, region))
        finally:
            for h in hubs:
                h.proc.kill()
    assert report_b["position"] == report_c["position"] == last, (report_b, report_c)
    assert c.when(found) is None
    steps = [s for s, _ in got]
    return {
        "stream_position": last,
        "checkpoint_position": checkpoint_at,
        "writer_checkpoints": report_a["checkpoints"],
        "from_checkpoint": {
            "continues_s": round(continues_s, 2),
            "caught_up_s": round(b.caught_up_s(report_b), 2),
            "steps_decided": report_b["steps"],
        },
        "from_start": {
            "started_reading_s": round(c.when("reads region") or 0.0, 2),
            "caught_up_s": round(c.caught_up_s(report_c), 2),
            "steps_decided": report_c["steps"],
        },
        "decisions_twice": len(steps) - len(set(steps)),
    }


_REFERENCE_STEPS: list[int] = []


def reference_steps(messages: list[list[bytes]]) -> list[int]:
    if not _REFERENCE_STEPS:
        _REFERENCE_STEPS.extend(reference(messages, Region("hall")))
    return _REFERENCE_STEPS


PARTS = ("failover", "outage", "silent-cut", "regions", "checkpoints")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "stream"))
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--frames", type=int, default=600, help="frames per camera of the recorded node (lockstep)")
    parser.add_argument("--outage-messages", type=int, default=60000)
    parser.add_argument("--cut-s", type=float, default=600.0, help="silent-cut: how long the link is cut")
    parser.add_argument(
        "--checkpoint-past", type=int, nargs="+", default=[3000, 10000, 30000],
        help="past identities of the hubs whose checkpoints are measured in this process",
    )  # fmt: skip
    parser.add_argument(
        "--regions", type=int, nargs="+", default=[1, 4],
        help="regions: how many region hubs run at once in each measurement (the first is the baseline)",
    )  # fmt: skip
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="run only these measurements")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    messages = node_log(out, args.frames)
    print(f"recorded node: {len(messages)} messages", flush=True)
    result: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "messages": len(messages),
        "command": "python " + " ".join([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
    }
    if "failover" in args.only:
        trials = []
        for t in range(args.trials):
            trials.append(failover(out, messages, t))
            print(f"failover {t}: {trials[-1]}", flush=True)
        result["failover"] = trials
        result["failover_summary"] = {
            "takeover_s_mean": round(statistics.mean(t["takeover_s"] for t in trials), 2),
            "takeover_s_max": max(t["takeover_s"] for t in trials),
            "first_publish_s_max": max(t["first_publish_s"] for t in trials),
            "lost": sum(t["lost"] for t in trials),
            "twice": sum(t["twice"] for t in trials),
            "different": sum(t["different"] for t in trials),
        }
    if "outage" in args.only:
        result["outage"] = outage(out, messages, args.outage_messages)
        print(f"outage: {result['outage']}", flush=True)
    if "silent-cut" in args.only:
        result["silent_cut"] = silent_cut(out, messages, args.cut_s)
        print(f"silent cut: {result['silent_cut']}", flush=True)
    if "regions" in args.only:
        parallel = regions(out, messages, tuple(args.regions))
        print(f"regions: {parallel}", flush=True)
        result["regions"] = parallel
        result["speedup"] = {str(r["regions"]): round(r["per_s"] / parallel[0]["per_s"], 2) for r in parallel[1:]}
        result["regions_projected"] = projected_speedup(parallel)
    if "checkpoints" in args.only:
        result["checkpoints"] = checkpoint_sizes(out, args.checkpoint_past)
        result["restart"] = restart(out, messages)
        print(f"restart: {result['restart']}", flush=True)
    (out / "stream.json").write_text(json.dumps(result, indent=1))
    print_table(result)
    print(f"wrote {out / 'stream.json'}")
    return result


def print_table(result: dict) -> None:
    print("| measure | value |\n|---|---|")
    if "failover" in result:
        s, n = result["failover_summary"], len(result["failover"])
        took = f"{s['takeover_s_mean']} / {s['takeover_s_max']} s"
        print(f"| failover: lease taken over after the kill (mean / max of {n}) | {took} |")
        print(f"| failover: first step published by the standby (max) | {s['first_publish_s_max']} s |")
        print(f"| failover: steps lost / twice / different | {s['lost']} / {s['twice']} / {s['different']} |")
    if "outage" in result:
        cut = result["outage"]
        lost = f"{cut['lost']} / {cut['twice']}, {cut['catch_up_s']} s"
        print(f"| node cut off, {cut['messages_during_outage']} messages: lost / twice, catch-up | {lost} |")
    if "silent_cut" in result:
        cut = result["silent_cut"]
        value = f"{cut['lost']} / {cut['twice']} of {cut['sent']}, {cut['catch_up_s']} s"
        what = f"link cut silently for {cut['cut_s']:g} s at {cut['rate_per_s']:g}/s: lost / twice, catch-up"
        print(f"| {what} | {value} |")
    if "regions" in result:
        for r in result["regions"]:
            print(f"| {r['regions']} region hub(s) reading at once | {r['per_s']} messages/s |")
        for n, speedup in result["speedup"].items():
            print(f"| speed-up with {n} regions ({os.cpu_count()} CPUs) | {speedup}x |")
        p = result["regions_projected"]
        value = f"{p['projected_speedup']}x (CPU a message: {p['cpu_per_message_ratio']}x one hub's; server busy"
        value += f" {p['server_busy']})"
        print(f"| projected with a core per hub, from each hub's CPU time | {value} |")
    for c in result.get("checkpoints", []):
        n = c["past_identities"]
        value = f"{c['mb']} MB, {c['dump_s']} s / {c['load_s']} s"
        print(f"| checkpoint, {n} past identities: size, dump / load | {value} |")
        value = f"{c['store_put_s']} s / {c['store_get_s']} s / {c['store_get_writeinto_s']} s"
        print(f"| checkpoint, {n} past identities: object store put / get / get into a buffer | {value} |")
        value = f"{c['same_decisions']} ({c['decisions_compared']} decision messages)"
        print(f"| checkpoint, {n} past identities: loaded hub decides as the writer | {value} |")
    if "restart" in result:
        r = result["restart"]
        b, c = r["from_checkpoint"], r["from_start"]
        at = f"position {r['checkpoint_position']} of {r['stream_position']}"
        value = f"{b['continues_s']} s / {b['caught_up_s']} s ({b['steps_decided']} steps decided)"
        print(f"| hub started after a clean stop, checkpoint at {at}: continues / caught up | {value} |")
        value = f"{c['caught_up_s']} s ({c['steps_decided']} steps decided; reading from {c['started_reading_s']} s)"
        print(f"| hub started with no checkpoint (reads from the start): caught up | {value} |")


if __name__ == "__main__":
    main()
