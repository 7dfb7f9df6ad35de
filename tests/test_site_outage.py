"""A site whose hub is away, with real processes and sockets: an ``edge.run`` node with no hub
(it warns, decides on its own, reports the outage and never leaves its global ids silently
empty), a hub that starts late (the node's provisional ids are mapped onto site ids), and
``configs/site.demo/run.sh`` when its hub fails (it stops at once, with the hub's error)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, dev_tool
from test_site import ENV, HubProcess, Subscriber, free_port, wait_for

NODE1 = REPO / "configs" / "site.demo" / "node1.yaml"
RUN_SH = REPO / "configs" / "site.demo" / "run.sh"
DEMO_OUT = REPO / "runs" / "site_demo"
PROVISIONAL = 10**9  # SiteConfig.local_id_base: provisional ids start at or above this


def mot_ids(path: Path) -> list[int]:
    return [int(line.split(",")[1]) for line in path.read_text().splitlines() if line.strip()]


def node(tmp: Path, hub: str, *overrides: str) -> tuple[subprocess.Popen, Path, Path]:
    """``edge.run`` on site demo node1 (cam1), its log in a file, outputs under ``tmp``."""
    log, report = tmp / "node.log", tmp / "node.json"  # the hub writes report.json
    cmd = [sys.executable, "-m", "edge.run", "--cameras", str(NODE1), "--report", str(report), f"site.hub={hub}",
           f"publisher.endpoint=tcp://127.0.0.1:{free_port()}", f"outputs.mot_dir={tmp / 'mot'}", *overrides]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=f, stderr=subprocess.STDOUT)
    return proc, log, report


def test_a_node_whose_hub_never_answers_warns_decides_itself_and_says_so(tmp_path):
    """The issue's run: node1 for 70 frames, nobody at the hub's address, the demo's 60 s flush
    timeout. It warns within a few seconds naming the endpoint, writes every global row with its
    own provisional ids, does not sit out the flush timeout, and the report lists the outage."""
    hub = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc, log, report_path = node(tmp_path, hub, "run.max_frames=70", "site.flush_timeout_s=60")
    proc.wait(timeout=120)
    wall = time.monotonic() - started
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert wall < 60, f"{wall:.0f} s: the node sat out the 60 s flush timeout for a hub known to be away"
    warning = re.search(rf"(\d\d):(\d\d):(\d\d) WARNING .*site: the hub {re.escape(hub)} does not answer", text)
    built = re.search(r"(\d\d):(\d\d):(\d\d) INFO edge.pipeline: matching:", text)
    assert warning and built, text[-3000:]
    seconds = lambda m: int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])  # noqa: E731
    assert seconds(warning) - seconds(built) <= 5 + 3  # hub_timeout_s 5, to the second
    local, global_ = mot_ids(tmp_path / "mot" / "cam1.txt"), mot_ids(tmp_path / "mot" / "cam1.global.txt")
    assert len(local) > 20 and len(global_) == len(local)  # every row has its global id
    assert min(global_) >= PROVISIONAL
    site = json.loads(report_path.read_text())["site"]
    assert site["answered"] is False and len(site["hub_outages"]) == 1 and site["hub_outages"][0]["to"] is None
    assert site["rows"] == site["rows_provisional"] == len(global_)
    assert min(global_) >= site["provisional_from"] and site["provisional_ids"] == len(set(global_))
    assert f"site: the hub {hub} never answered: {len(global_)} of {len(global_)} global MOT rows carry node node1's own provisional ids" in text


@pytest.mark.slow
def test_a_node_decides_alone_until_a_late_hub_answers_then_gets_site_ids(tmp_path):
    """Node1 in real time, no hub at first: once it has published an identity of its own (a
    provisional id), the hub starts. The node resends what it decided, the hub's site ids replace
    the provisional ones (mapped in the report), and the later rows carry site ids."""
    hub = HubProcess(tmp_path)
    cams = "cameras=[{id: cam1, source: 'synthetic://demo?camera=cam1', fps: 10, realtime: true}]"
    proc, log, report_path = node(tmp_path, hub.endpoint, cams, "run.max_frames=400", "site.hub_timeout_s=1", "site.flush_timeout_s=30")
    sub = Subscriber(next(a.split("=", 1)[1] for a in proc.args if a.startswith("publisher.endpoint=")))  # the node's own events
    try:
        provisional = lambda: [h for t, h in sub.drain(0.2) if t.startswith("identity/") and h["global_id"] >= PROVISIONAL]  # noqa: E731
        wait_for(lambda: provisional() or proc.poll() is not None, 90, "an identity decided by the node alone")
        assert proc.poll() is None, log.read_text()[-3000:]
        hub.start()
        proc.wait(timeout=120)
    finally:
        sub.close()
        if proc.poll() is None:
            proc.kill()
        hub_report = hub.stop() if hub.proc is not None else {}
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "does not answer" in text and "answers again after" in text
    site = json.loads(report_path.read_text())["site"]
    assert site["answered"] is True and len(site["hub_outages"]) == 1 and site["hub_outages"][0]["to"] is not None
    assert site["reconciled"], site  # provisional ids mapped onto the hub's site ids
    assert all(s < PROVISIONAL for ids in site["reconciled"].values() for s in ids)
    ids = mot_ids(tmp_path / "mot" / "cam1.global.txt")
    assert site["rows"] == len(ids) and site["rows_provisional"] == sum(i >= PROVISIONAL for i in ids)
    assert site["rows_provisional"] < len(ids)  # tracklets still live when the hub came back got site ids, and all later ones
    assert hub_report["nodes"]["node1"]["summaries"] > 0


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _run_sh(frames: int) -> subprocess.Popen:
    return subprocess.Popen(["bash", str(RUN_SH), str(frames)], cwd=REPO, env={**ENV, "PYTHON": sys.executable},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_sh_stops_at_once_with_the_hub_s_error_when_the_hub_cannot_start():
    """The demo hub's port is taken: run.sh ends within seconds, non-zero, the hub's error on
    stderr, no node left and no ``kill: No such process``."""
    taken = socket.socket()
    try:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past an earlier demo's connections in TIME_WAIT
        taken.bind(("127.0.0.1", 5600))  # the demo hub's port (configs/site.demo/hub.yaml)
        taken.listen()
        started = time.monotonic()
        run = _run_sh(20)
        out, err = run.communicate(timeout=120)
    finally:
        taken.close()
    try:
        assert run.returncode == 1, out + err
        assert time.monotonic() - started < 30
        assert "site demo: the hub exited (status 2)" in err
        assert "cannot bind the hub to tcp://127.0.0.1:5600" in err
        assert "No such process" not in err + out and "Terminated" not in err
        assert not (DEMO_OUT / "node1.log").exists()  # the nodes never started
    finally:
        import shutil

        shutil.rmtree(DEMO_OUT, ignore_errors=True)


@pytest.mark.slow
def test_run_sh_stops_at_once_when_the_hub_dies_under_it():
    """Both nodes connected and working, then the hub is killed: run.sh stops the nodes, says so
    with the end of hub.log on stderr and exits 1, without waiting for the nodes' frames."""
    run = _run_sh(400)
    try:
        wait_for(lambda: (DEMO_OUT / "hub.log").exists() and all(f"node {n}: session" in (DEMO_OUT / "hub.log").read_text()
                                                                   for n in ("node1", "node2")) or run.poll() is not None, 120, "both nodes")
        assert run.poll() is None, run.communicate()
        kids = _children(run.pid)
        hub = next(p for p in kids if "edge.hub" in _cmdline(p))
        nodes = [p for p in kids if "edge.run" in _cmdline(p)]
        assert len(nodes) == 2
        time.sleep(1.0)
        os.kill(hub, signal.SIGKILL)
        killed = time.monotonic()
        out, err = run.communicate(timeout=60)
        took = time.monotonic() - killed
        assert run.returncode == 1, out + err
        assert took < 15, took
        assert "site demo: the hub exited (status 137); the end of runs/site_demo/hub.log:" in err
        assert "node node2: session" in err  # the log's end is shown
        assert "No such process" not in err + out and "Terminated" not in err and "Killed" not in err
        assert not any(Path(f"/proc/{p}").exists() and _cmdline(p) for p in nodes)  # the nodes were ended
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        import shutil

        shutil.rmtree(DEMO_OUT, ignore_errors=True)


def test_run_sh_passes_shellcheck():
    proc = subprocess.run([dev_tool("shellcheck"), str(RUN_SH)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tracklets_keep_their_site_ids_through_an_outage_and_new_people_get_provisional_ones(tmp_path):
    """The hub dies after telling a node its two people's site ids; the node (its own engine,
    as edge.run) keeps those ids for them and gives a person first seen during the outage a
    provisional id, at the end, without waiting out its flush timeout."""
    from test_site import fake_node, finish, read

    hub = HubProcess(tmp_path).start()
    a, out = fake_node(tmp_path, hub.endpoint, "a", "cam1", [0, 1], "--steps", "50", "--late", "2", "--local", "--flush-timeout", "60")
    try:
        before = wait_for(lambda: len(read(out).get("ids", {})) == 2 and read(out)["ids"], 30, "site ids")
        hub.stop(signal.SIGKILL)
        started = time.monotonic()
        text = finish(a, timeout=60)
    finally:
        a.kill()
    data = read(out)
    assert time.monotonic() - started < 30, text
    assert f"site: the hub {hub.endpoint} stopped answering" in text
    assert data["final"]["cam1/1"] == before["cam1/1"] and data["final"]["cam1/2"] == before["cam1/2"]
    report = data["report"]
    assert data["final"]["cam1/3"] >= report["provisional_from"] >= PROVISIONAL  # the late person: decided here
    assert report["provisional_ids"] == 1 and report["answered"] and report["hub_outages"][0]["to"] is None
