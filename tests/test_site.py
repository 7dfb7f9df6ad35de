"""The site: hub and nodes as real processes over real sockets (ZeroMQ, CURVE), faults included.

Nodes are ``tests/site_fake_node.py`` (the real :class:`edge.site.node.SiteEngine` fed with
people of fixed appearance) unless a test drives a socket by hand to misbehave.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
import zmq

from core.ports import free_port
from edge.wire.site_protocol import MAGIC, encode, model_id

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "edge" / "demo_models" / "reid.onnx"
FAKE = REPO / "tests" / "site_fake_node.py"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


class HubProcess:
    """``python -m edge.hub`` in a subprocess; its log goes to a file the test can read."""

    def __init__(self, tmp: Path, **extra):
        self.tmp = tmp
        self.port, self.pub_port = free_port(), free_port()
        self.cfg = {
            "bind": f"tcp://127.0.0.1:{self.port}",
            "reid_model": str(MODEL),
            "store": str(tmp / "hub.sqlite"),
            "publisher": {"endpoint": f"tcp://127.0.0.1:{self.pub_port}", "high_water_mark": 10},
            "stats_interval_s": 0.5,
            "node_timeout_s": 1.0,
            "heartbeat_s": 0.2,
            **extra,
        }
        (tmp / "hub.yaml").write_text(yaml.safe_dump(self.cfg))
        self.log = tmp / "hub.log"
        self.proc = None

    @property
    def endpoint(self) -> str:
        return self.cfg["bind"]

    def start(self) -> HubProcess:
        self.logfile = open(self.log, "a")
        offset = len(self.text())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edge.hub",
                "--config",
                str(self.tmp / "hub.yaml"),
                "--report",
                str(self.tmp / "report.json"),
            ],
            cwd=REPO,
            env=ENV,
            stdout=self.logfile,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: "hub: session" in self.text()[offset:] or self.proc.poll() is not None, 30, "the hub to start")
        assert self.proc.poll() is None, self.text()
        return self

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self, sig=signal.SIGTERM) -> dict:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
        self.logfile.close()
        report = self.tmp / "report.json"
        return json.loads(report.read_text()) if sig == signal.SIGTERM and report.exists() else {}


def wait_for(cond, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def fake_node(
    tmp: Path, hub: str, node: str, camera: str, people: list[int], *args: str
) -> tuple[subprocess.Popen, Path]:
    out = tmp / f"{node}.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(FAKE),
            "--hub",
            hub,
            "--node",
            node,
            "--camera",
            camera,
            "--people",
            *map(str, people),
            "--out",
            str(out),
            *args,
        ],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, out


def read(out: Path) -> dict:
    return json.loads(out.read_text()) if out.exists() else {}


def finish(proc: subprocess.Popen, timeout: float = 30) -> str:
    text, _ = proc.communicate(timeout=timeout)
    return text


class Subscriber:
    """A SUB socket collecting (topic, header) in the test process."""

    def __init__(self, endpoint: str, curve: tuple[bytes, bytes, bytes] | None = None):
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve:
            self.sock.curve_publickey, self.sock.curve_secretkey, self.sock.curve_serverkey = curve
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)
        self.events: list[tuple[str, dict]] = []

    def drain(self, seconds: float = 0.0) -> list[tuple[str, dict]]:
        deadline = time.time() + seconds
        while True:
            if self.sock.poll(max(0, int((deadline - time.time()) * 1000))):
                parts = self.sock.recv_multipart()
                self.events.append((parts[0].decode(), json.loads(parts[1])))
            elif time.time() >= deadline:
                return self.events

    def close(self):
        self.sock.close(0)


def test_hub_gives_one_site_id_per_person_across_node_processes(tmp_path):
    hub = HubProcess(tmp_path).start()
    sub = Subscriber(f"tcp://127.0.0.1:{hub.pub_port}")
    slow = zmq.Context.instance().socket(zmq.SUB)  # never reads: must not stall the hub
    slow.setsockopt(zmq.RCVHWM, 1)
    slow.setsockopt(zmq.SUBSCRIBE, b"")
    slow.connect(f"tcp://127.0.0.1:{hub.pub_port}")
    try:
        a, a_out = fake_node(tmp_path, hub.endpoint, "a", "cam1", [0, 1], "--steps", "20")
        b, b_out = fake_node(tmp_path, hub.endpoint, "b", "cam2", [1, 2], "--steps", "20")
        finish(a), finish(b)
        ia, ib = read(a_out)["final"], read(b_out)["final"]
        # person 1 is cam1/2 and cam2/1: one site id; persons 0 and 2 each their own
        assert ia["cam1/2"] == ib["cam2/1"]
        assert len({ia["cam1/1"], ia["cam1/2"], ib["cam2/2"]}) == 3
        events = sub.drain(1.0)
        identity = [h for t, h in events if t.startswith("identity/")]
        assert {(h["node"], h["camera"], h["local_id"]) for h in identity if h["event"] in ("new", "assigned")} == {
            ("a", "cam1", 1),
            ("a", "cam1", 2),
            ("b", "cam2", 1),
            ("b", "cam2", 2),
        }
        assert all("embedding_dim" not in h for h in identity)  # embeddings are off unless asked for
        assert any(t == "stats" for t, _ in events)
    finally:
        sub.close(), slow.close(0)
        report = hub.stop()
    assert report["malformed"] == report["replayed"] == report["refused"] == 0
    assert report["summaries"] == 2 * 2 * 21


def test_decisions_that_arrive_while_a_node_flushes_are_returned_not_lost(tmp_path):
    """A person seen only in a node's last step: the hub decides on them after the node's last
    update, while it waits for its final ids, so ``SiteEngine.flush`` must hand that decision to
    the pipeline (which publishes it), and the tracklet still gets its final id."""
    hub = HubProcess(tmp_path).start()
    try:
        a, a_out = fake_node(tmp_path, hub.endpoint, "a", "cam1", [0], "--steps", "10", "--late", "5")
        finish(a)
        data = read(a_out)
        assert [d for d in data["flushed"] if d[2] == "cam1/2"] == [["new", data["final"]["cam1/2"], "cam1/2"]]
        assert data["final"]["cam1/2"] != data["final"]["cam1/1"]
    finally:
        hub.stop()


def test_model_or_embedding_size_mismatch_is_refused_with_a_clear_error(tmp_path):
    hub = HubProcess(tmp_path, lockstep=["wrongdim", "wrongmodel"]).start()
    try:
        p, out = fake_node(tmp_path, hub.endpoint, "stranger", "cam1", [0])
        assert "refused node stranger: node 'stranger' is not one of this lockstep site's nodes" in finish(p)
        p, out = fake_node(tmp_path, hub.endpoint, "wrongdim", "cam1", [0], "--dim", "128")
        text = finish(p)
        assert p.returncode == 2
        assert "the site hub refused node wrongdim: embedding size 128, the hub's model gives 320" in text
        p, out = fake_node(tmp_path, hub.endpoint, "wrongmodel", "cam1", [0], "--model-id", "osnet.onnx:0123")
        text = finish(p)
        assert "refused node wrongmodel: model 'osnet.onnx:0123', the hub's is 'reid.onnx:" in text
    finally:
        report = hub.stop()
    assert report["refused"] == 3
    assert "node wrongdim refused: embedding size 128" in hub.text()


def test_a_lockstep_hub_goes_on_without_a_listed_node_that_never_connects(tmp_path):
    """Node b never starts: a's steps wait for it (before, for good: a sat out its flush timeout
    without final ids). Waited for absent_after_s, b is said absent, once, in the log and the
    stats, and a's steps are decided: a gets every final id before its flush timeout."""
    hub = HubProcess(tmp_path, lockstep=["a", "b"], absent_after_s=2.0).start()
    try:
        p, out = fake_node(tmp_path, hub.endpoint, "a", "cam1", [0, 1], "--steps", "10", "--flush-timeout", "60")
        text = finish(p, 60)
        assert p.returncode == 0, text
        final = read(out)["final"]
        assert len(final) == 2 and all(gid is not None for gid in final.values()), final
    finally:
        report = hub.stop()
    assert report["absent"] == ["b"]
    said = [line for line in hub.text().splitlines() if "said absent" in line]
    assert len(said) == 1 and "node b never connected" in said[0], hub.text()[-2000:]
    assert "hub: waits for node b (lockstep)" in hub.text()


def _hello(sock: zmq.Socket, seq: int, node: str = "raw", cameras=("camX",), **extra) -> dict:
    sock.send_multipart(
        encode(
            "hello",
            {
                "seq": seq,
                "node": node,
                "session": "s1",
                "model_id": model_id(MODEL),
                "embedding_dim": 320,
                "cameras": list(cameras),
                **extra,
            },
        )
    )
    return _expect(sock, "welcome")


def test_the_hub_says_a_live_node_whose_clock_runs_far_ahead_once_and_not_a_file_node(tmp_path):
    """A live node's scene time is its wall clock: an hour ahead it would move the site's clock
    an hour on, unseen. The hub says so once and shows it in its stats; a node on files in
    lockstep (its scene clock as fast as it computes) is not checked."""
    hub = HubProcess(tmp_path).start()
    socks = [zmq.Context.instance().socket(zmq.DEALER) for _ in range(2)]
    try:
        for sock, (node, camera, live) in zip(socks, [("live", "camX", True), ("files", "camY", False)]):
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(hub.endpoint)
            _hello(sock, 1, node, [camera], live=live)
            for seq, ahead in ((2, 3600.0), (3, 3700.0), (4, -30.0)):  # a buffered, late message: not said
                sock.send_multipart(encode("summaries", {"seq": seq, "now": time.time() + ahead, "items": []}))
                assert _expect(sock, "ack")["seq"] == seq
    finally:
        for sock in socks:
            sock.close(0)
        report = hub.stop()
    assert list(report["clock_ahead"]) == ["live"] and 3690 < report["clock_ahead"]["live"] < 3710
    said = [line for line in hub.text().splitlines() if "clock runs" in line]
    assert len(said) == 1 and "node live's clock runs 3" in said[0] and "move the site's clock" in said[0], said
    assert "s ahead of the hub's (session s1)" in said[0]


def _expect(sock: zmq.Socket, kind: str, timeout: float = 10) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sock.poll(100):
            parts = sock.recv_multipart()
            if parts[1].decode() == kind:
                return json.loads(parts[2])
    raise AssertionError(f"no {kind} from the hub")


def test_malformed_and_replayed_messages_are_dropped_and_counted(tmp_path):
    hub = HubProcess(tmp_path).start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(hub.endpoint)
    try:
        _hello(sock, 1)
        good = encode("summaries", {"seq": 2, "now": 1.0, "items": []})
        sock.send_multipart(good)
        assert _expect(sock, "ack")["seq"] == 2
        sock.send_multipart(good)  # replayed: same seq
        sock.send_multipart([b"garbage"])
        sock.send_multipart([MAGIC, b"summaries", b"{not json"])
        sock.send_multipart(
            [
                MAGIC,
                b"summaries",
                json.dumps(
                    {
                        "seq": 3,
                        "now": 1.0,
                        "items": [{"camera": "camX", "local_id": 1, "boxes": 0}],
                        "arrays": [["f8", [2, 4]]],
                    }
                ).encode(),
                b"\x00" * 8,
            ]
        )  # 8 bytes, 64 announced
        sock.send_multipart(
            encode(
                "summaries",
                {
                    "seq": 4,
                    "now": 1.0,
                    "items": [
                        {
                            "camera": "elsewhere",
                            "local_id": 1,
                            "first_seen": 0.0,
                            "last_seen": 1.0,
                            "n": 0,
                            "weight": 0.0,
                            "ended": False,
                            "boxes": 0,
                        }
                    ],
                },
                [np.zeros((2, 4))],
            )
        )  # not its camera
        sock.send_multipart(encode("summaries", {"seq": 5, "now": 2.0, "items": []}))
        assert _expect(sock, "ack")["seq"] == 5  # the hub is still serving
    finally:
        sock.close(0)
        report = hub.stop()
    assert report["replayed"] == 1
    assert report["malformed"] == 4
    assert hub.proc.returncode == 0


def test_curve_allow_list_refuses_unknown_keys_and_encrypts_events(tmp_path):
    keys = tmp_path / "keys"
    subprocess.run(
        [sys.executable, "-m", "edge.keys", "--out", str(keys), "hub", "node1", "intruder", "viewer"],
        cwd=REPO,
        env=ENV,
        check=True,
        capture_output=True,
    )
    allow = tmp_path / "allow"
    allow.mkdir()
    for name in ("node1", "viewer"):
        (allow / f"{name}.key").write_text((keys / f"{name}.key").read_text())
    curve = {"secret_key": str(keys / "hub.key_secret"), "allow": str(allow)}
    hub = HubProcess(
        tmp_path, curve=curve, publisher={"endpoint": f"tcp://127.0.0.1:{free_port()}", "curve": curve}
    ).start()
    pub = hub.cfg["publisher"]["endpoint"]
    import zmq.auth

    viewer_pub, viewer_sec = zmq.auth.load_certificate(keys / "viewer.key_secret")
    hub_pub, _ = zmq.auth.load_certificate(keys / "hub.key")
    sub = Subscriber(pub, (viewer_pub, viewer_sec, hub_pub))
    plain = Subscriber(pub)  # no keys: gets nothing
    intruder_pub, _ = zmq.auth.load_certificate(keys / "intruder.key")
    listen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.listen",
            "--endpoint",
            pub,
            "--topic",
            "identity",
            "--count",
            "1",
            "--secret-key",
            str(keys / "viewer.key_secret"),
            "--server-key",
            str(keys / "hub.key"),
        ],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(1.0)  # the listener connects before the first event
    try:
        bad, bad_out = fake_node(
            tmp_path,
            hub.endpoint,
            "bad",
            "cam2",
            [3],
            "--steps",
            "10",
            "--flush-timeout",
            "0",
            "--secret-key",
            str(keys / "intruder.key_secret"),
            "--server-key",
            str(keys / "hub.key"),
        )
        ok, ok_out = fake_node(
            tmp_path,
            hub.endpoint,
            "node1",
            "cam1",
            [0],
            "--steps",
            "10",
            "--secret-key",
            str(keys / "node1.key_secret"),
            "--server-key",
            str(keys / "hub.key"),
        )
        finish(ok)
        text = finish(bad)
        # an allow-listed key may not claim another node's name (here the viewer's key as "node2")
        imp, imp_out = fake_node(
            tmp_path,
            hub.endpoint,
            "node2",
            "cam2",
            [3],
            "--steps",
            "3",
            "--flush-timeout",
            "0",
            "--secret-key",
            str(keys / "viewer.key_secret"),
            "--server-key",
            str(keys / "hub.key"),
        )
        finish(imp)
        assert read(imp_out).get("ids", {}) == {}
        assert read(ok_out)["final"] == {"cam1/1": 1}
        assert read(bad_out)["ids"] == {} and not read(bad_out)["connected"]
        assert "refused our CURVE handshake" in text
        events = sub.drain(1.0)
        assert any(t == "identity/1" and h["node"] == "node1" for t, h in events)
        assert plain.drain(0.3) == []
        assert "identity 1 new: cam1/1" in listen.communicate(timeout=20)[0]  # edge.listen with CURVE keys
    finally:
        listen.kill()
        sub.close(), plain.close()
        report = hub.stop()
    assert "node 'node2' connected with the key of 'viewer'" in hub.text()
    kid = intruder_pub.decode()[:8]
    assert f"key {kid} is not on the allow-list" in hub.text()
    assert report["refused_keys"].get(kid, 0) >= 1
    assert (
        report["nodes"]["node1"]["key"] == zmq.auth.load_certificate(keys / "node1.key")[0].decode()[:8]
    )  # the node's CURVE key id


def test_non_local_bind_without_keys_is_refused(tmp_path):
    hub = HubProcess(tmp_path)
    hub.cfg["bind"] = f"tcp://0.0.0.0:{free_port()}"
    (tmp_path / "hub.yaml").write_text(yaml.safe_dump(hub.cfg))
    r = subprocess.run(
        [sys.executable, "-m", "edge.hub", "--config", str(tmp_path / "hub.yaml")],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert (
        "the hub binds tcp://0.0.0.0:" in r.stderr and "without CURVE keys" in r.stderr and "insecure: true" in r.stderr
    )
    from edge.wire.publisher import EventPublisher

    with pytest.raises(ValueError, match=r"the event publisher binds tcp://\*:\d+ beyond localhost without CURVE keys"):
        EventPublisher(f"tcp://*:{free_port()}")
    EventPublisher(f"tcp://*:{free_port()}", insecure=True).close()  # said explicitly: allowed (with a warning)


def test_keys_cli_makes_pairs_and_never_overwrites(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "edge.keys", "--out", str(tmp_path), "hub"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and (tmp_path / "hub.key").exists() and (tmp_path / "hub.key_secret").exists()
    assert oct((tmp_path / "hub.key_secret").stat().st_mode & 0o777) == "0o600"
    r = subprocess.run(
        [sys.executable, "-m", "edge.keys", "--out", str(tmp_path), "hub"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "hub.key exists: not overwritten" in r.stderr


def test_node_pause_is_a_gap_and_it_resumes_with_its_site_ids(tmp_path):
    hub = HubProcess(tmp_path).start()
    listener = subprocess.Popen(
        [sys.executable, "-m", "edge.listen", "--endpoint", f"tcp://127.0.0.1:{hub.pub_port}"],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        a, a_out = fake_node(tmp_path, hub.endpoint, "a", "cam1", [0, 1], "--steps", "40")
        before = wait_for(lambda: len(read(a_out).get("ids", {})) == 2 and read(a_out)["ids"], 20, "site ids")
        os.kill(a.pid, signal.SIGSTOP)  # the node goes silent (a network cut looks the same to the hub)
        listener.kill()  # and a subscriber dies mid-run
        wait_for(lambda: "node a: no word for" in hub.text(), 10, "the hub to notice the gap")
        os.kill(a.pid, signal.SIGCONT)
        finish(a)
        after = read(a_out)
        assert after["final"] == before  # same session: its tracklets kept their site ids
    finally:
        listener.kill()
        report = hub.stop()
    assert len(report["nodes"]["a"]["gaps"]) == 1 and report["nodes"]["a"]["gaps"][0] >= 1.0
    assert "node a: back after a gap" in hub.text()


def test_node_restart_keeps_the_people_s_site_ids(tmp_path):
    hub = HubProcess(tmp_path).start()
    try:
        a, a_out = fake_node(tmp_path, hub.endpoint, "a", "cam1", [0, 1], "--steps", "100")
        before = wait_for(lambda: len(read(a_out).get("ids", {})) == 2 and read(a_out), 20, "site ids")
        a.kill()
        a.wait()
        a2, a2_out = fake_node(
            tmp_path, hub.endpoint, "a", "cam1", [1, 0], "--steps", "15"
        )  # same people, new local ids
        finish(a2)
        after = read(a2_out)
        assert after["session"] != before["session"]
        assert after["final"]["cam1/1"] == before["ids"]["cam1/2"]  # person 1
        assert after["final"]["cam1/2"] == before["ids"]["cam1/1"]  # person 0
    finally:
        report = hub.stop()
    assert report["nodes"]["a"]["session"] == after["session"]
    assert f"node a: session {before['session']} ended (node restarted)" in hub.text()


def test_hub_restart_reloads_identities_and_nodes_keep_their_ids(tmp_path):
    hub = HubProcess(tmp_path).start()
    sub = Subscriber(f"tcp://127.0.0.1:{hub.pub_port}")
    a, a_out = fake_node(tmp_path, hub.endpoint, "a", "cam1", [0, 1], "--steps", "60")
    try:
        before = wait_for(lambda: len(read(a_out).get("ids", {})) == 2 and read(a_out)["ids"], 20, "site ids")
        published = {h["global_id"] for t, h in sub.drain(0.5) if t.startswith("identity/")}
        assert published == set(before.values())
        hub.stop(signal.SIGKILL)  # no clean shutdown: only what was committed survives
        time.sleep(1.5)  # the node buffers meanwhile
        hub.start()
        assert "hub: reloaded 2 identities and 2 pinned tracklets" in hub.text()
        b, b_out = fake_node(
            tmp_path, hub.endpoint, "b", "cam2", [1], "--steps", "10"
        )  # a new node sees person 1 after the restart
        finish(a)
        finish(b)
        after = read(a_out)
        assert after["final"] == before
        assert read(b_out)["final"]["cam2/1"] == before["cam1/2"]
        assert after["stats"]["hub_gaps"] >= 1
    finally:
        sub.close()
        a.kill()
        report = hub.stop()
    assert report["gallery"] == 2
    import sqlite3

    db = sqlite3.connect(tmp_path / "hub.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {g for (g,) in db.execute("SELECT gid FROM identities")} == published


@pytest.mark.slow
def test_site_demo_two_edge_run_nodes_decide_exactly_as_one_process(tmp_path):
    """configs/site.demo/run.sh: the hub and two real edge.run nodes over TCP, then one process on
    the same frames; the MOT files (local and global ids) must be identical up to id renaming."""
    import shutil

    out = tmp_path / "site_demo"  # its own folder and free ports: runs beside another demo
    ports = " ".join(str(free_port()) for _ in range(4))
    r = subprocess.run(
        ["bash", str(REPO / "configs" / "site.demo" / "run.sh"), "30"],
        cwd=REPO,
        env={**ENV, "PYTHON": sys.executable, "SITE_DEMO_OUT": str(out), "SITE_DEMO_PORTS": ports},
        capture_output=True,
        text=True,
        timeout=400,
    )
    try:
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert "identical up to id renaming" in r.stdout
        site, single = (
            json.loads((out / p).read_text())["cross_camera"] for p in ("scores.json", "single/scores.json")
        )
        assert site == single
        hub_log = (out / "hub.log").read_text()
        assert "node node1: session" in hub_log and "node node2: session" in hub_log
        # each node's bye reaches the hub, even one with nothing left to wait for (it used to be lost
        # at close, and the other node then waited out its 60 s for final ids the hub held back)
        assert "node node1: bye" in hub_log and "node node2: bye" in hub_log, hub_log[-1500:]
        node_log = (out / "node2.log").read_text()
        assert "site: welcomed by the hub" in node_log
        assert "without a final id" not in node_log, node_log[-1500:]
    finally:
        shutil.rmtree(out, ignore_errors=True)
