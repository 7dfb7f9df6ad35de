"""A site whose hub is away, with real processes and sockets: an ``edge.run`` node with no hub
(it warns, decides on its own, reports the outage and never leaves its global ids silently
empty), a hub that starts late (the node's provisional ids are mapped onto site ids), and
``configs/site.demo/run.sh`` when its hub fails (it stops at once, with the hub's error). The demo
runs here on free ports with its outputs under the test's tmp_path (``SITE_DEMO_PORTS``,
``SITE_DEMO_OUT``): a test never touches the repository's ``runs/site_demo``."""

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
DEMO_OUT = REPO / "runs" / "site_demo"  # the demo's default outputs: a user's, never the tests'
PROVISIONAL = 10**9  # SiteConfig.local_id_base: provisional ids start at or above this


def mot_ids(path: Path) -> list[int]:
    return [int(line.split(",")[1]) for line in path.read_text().splitlines() if line.strip()]


def node(tmp: Path, hub: str, *overrides: str) -> tuple[subprocess.Popen, Path, Path]:
    """``edge.run`` on site demo node1 (cam1), its log in a file, outputs under ``tmp``."""
    log, report = tmp / "node.log", tmp / "node.json"  # the hub writes report.json
    cmd = [
        sys.executable,
        "-m",
        "edge.run",
        "--cameras",
        str(NODE1),
        "--report",
        str(report),
        f"site.hub={hub}",
        f"publisher.endpoint=tcp://127.0.0.1:{free_port()}",
        f"outputs.mot_dir={tmp / 'mot'}",
        *overrides,
    ]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=f, stderr=subprocess.STDOUT)
    return proc, log, report


def test_a_node_whose_hub_never_answers_warns_decides_itself_and_says_so(tmp_path):
    """The issue's run: node1 for 70 frames, nobody at the hub's address. It warns a few seconds
    after it starts (hub_timeout_s 5) naming the endpoint, writes every global row with its own
    provisional ids, does not sit out the flush timeout (300 s here, so a slow machine cannot pass
    for a wait), and the report lists the outage."""
    hub = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc, log, report_path = node(tmp_path, hub, "run.max_frames=70", "site.flush_timeout_s=300")
    proc.wait(timeout=280)
    wall = time.monotonic() - started
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert wall < 150, f"{wall:.0f} s: the node sat out the 300 s flush timeout for a hub known to be away"
    warning = re.search(
        rf"(\d\d):(\d\d):(\d\d) WARNING .*site: the hub {re.escape(hub)} does not answer \(nothing for ([\d.]+) s\)",
        text,
    )
    built = re.search(
        r"(\d\d):(\d\d):(\d\d) INFO edge.runtime.pipeline: matching:", text
    )  # just before the site link starts
    assert warning and built, text[-3000:]
    seconds = lambda m: int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])  # noqa: E731
    # hub_timeout_s 5: not before it, and soon after on a loaded machine too (its I/O thread shares the CPU
    # with model loading)
    assert 5.0 <= float(warning[4]) <= 5 + 10, warning[0]
    assert seconds(warning) - seconds(built) <= 5 + 10, (warning[0], built[0])
    assert text.index(warning[0]) < text.index("INFO edge.run: done:")  # during the run, not after it
    local, global_ = mot_ids(tmp_path / "mot" / "cam1.txt"), mot_ids(tmp_path / "mot" / "cam1.global.txt")
    assert len(local) > 20 and len(global_) == len(local)  # every row has its global id
    assert min(global_) >= PROVISIONAL
    site = json.loads(report_path.read_text())["site"]
    assert site["answered"] is False and len(site["hub_outages"]) == 1 and site["hub_outages"][0]["to"] is None
    assert site["rows"] == site["rows_provisional"] == len(global_)
    assert min(global_) >= site["provisional_from"] and site["provisional_ids"] == len(set(global_))
    assert (
        f"site: the hub {hub} never answered: {len(global_)} of {len(global_)} global MOT rows carry "
        "node node1's own provisional ids" in text
    )


@pytest.mark.slow
def test_a_node_decides_alone_until_a_late_hub_answers_then_gets_site_ids(tmp_path):
    """Node1 in real time, no hub at first: once it has published an identity of its own (a
    provisional id), the hub starts. The node resends what it decided, the hub's site ids replace
    the provisional ones (mapped in the report), and the later rows carry site ids."""
    hub = HubProcess(tmp_path)
    cams = "cameras=[{id: cam1, source: 'synthetic://demo?camera=cam1', fps: 10, realtime: true}]"
    proc, log, report_path = node(
        tmp_path, hub.endpoint, cams, "run.max_frames=180", "site.hub_timeout_s=1", "site.flush_timeout_s=30"
    )
    sub = Subscriber(
        next(a.split("=", 1)[1] for a in proc.args if a.startswith("publisher.endpoint="))
    )  # the node's own events
    try:

        def provisional():
            return [h for t, h in sub.drain(0.2) if t.startswith("identity/") and h["global_id"] >= PROVISIONAL]

        wait_for(lambda: provisional() or proc.poll() is not None, 90, "an identity decided by the node alone")
        assert proc.poll() is None, log.read_text()[-3000:]
        hub.start()
        proc.wait(timeout=120)
        events = sub.drain(0.5)
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
    assert site["rows_provisional"] < len(
        ids
    )  # tracklets still live when the hub came back got site ids, and all later ones
    assert hub_report["nodes"]["node1"]["summaries"] > 0
    # the node's events say which ids are its own (track, identity and snapshot events alike)
    ids = [(h["global_id"], h.get("provisional")) for _, h in events if h.get("global_id") is not None]
    snapshots = [i for _, h in events if h["event"] == "snapshot" for i in h["identities"]]
    ids += [(i["global_id"], i.get("provisional")) for i in snapshots]
    assert {p for g, p in ids if g >= PROVISIONAL} == {True} and {p for g, p in ids if g < PROVISIONAL} == {None}
    assert {t.split("/")[0] for t, h in events if h.get("provisional")} >= {"track", "identity"}


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _demo_out_state() -> dict[str, int]:
    """What the repository's runs/site_demo holds (a user's demo): names and modification times."""
    return (
        {str(p.relative_to(DEMO_OUT)): p.stat().st_mtime_ns for p in DEMO_OUT.rglob("*")} if DEMO_OUT.exists() else {}
    )


def _run_sh(frames: int, out: Path, hub_port: int | None = None) -> subprocess.Popen:
    """run.sh writing under ``out``, on free ports (the hub's ``hub_port`` if given)."""
    ports = [hub_port or free_port(), free_port(), free_port(), free_port()]
    env = {**ENV, "PYTHON": sys.executable, "SITE_DEMO_OUT": str(out), "SITE_DEMO_PORTS": " ".join(map(str, ports))}
    return subprocess.Popen(
        ["bash", str(RUN_SH), str(frames)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_run_sh_stops_at_once_with_the_hub_s_error_when_the_hub_cannot_start(tmp_path):
    """The demo hub's port is taken: run.sh ends within seconds, non-zero, the hub's error on
    stderr, no node left and no ``kill: No such process``; everything it wrote is under
    SITE_DEMO_OUT, the repository's runs/site_demo untouched."""
    before = _demo_out_state()
    out_dir = tmp_path / "demo"
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        run = _run_sh(20, out_dir, hub_port=port)
        out, err = run.communicate(timeout=120)
    finally:
        taken.close()
    assert run.returncode == 1, out + err
    assert time.monotonic() - started < 60
    assert f"site demo: the hub exited (status 2); the end of {out_dir}/hub.log:" in err
    assert f"cannot bind the hub to tcp://127.0.0.1:{port}" in err
    assert "No such process" not in err + out and "Terminated" not in err
    assert (out_dir / "hub.log").exists() and not (out_dir / "node1.log").exists()  # the nodes never started
    assert _demo_out_state() == before


def test_run_sh_refuses_ports_that_are_not_four_numbers(tmp_path):
    run = subprocess.run(
        ["bash", str(RUN_SH), "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, "PYTHON": sys.executable, "SITE_DEMO_OUT": str(tmp_path / "demo"), "SITE_DEMO_PORTS": "5600 5610"},
    )
    assert run.returncode == 2 and run.stderr.strip() == (
        "site demo: SITE_DEMO_PORTS must be four port numbers (hub, hub events, "
        "node1 events, node2 events), not '5600 5610'"
    ), run.stderr


@pytest.mark.slow
def test_run_sh_stops_at_once_when_the_hub_dies_under_it(tmp_path):
    """Both nodes connected and working, then the hub is killed: run.sh stops the nodes, says so
    with the end of hub.log on stderr and exits 1, without waiting for the nodes' frames."""
    before = _demo_out_state()
    out_dir = tmp_path / "demo"
    run = _run_sh(400, out_dir)
    try:
        wait_for(
            lambda: (
                (out_dir / "hub.log").exists()
                and all(f"node {n}: session" in (out_dir / "hub.log").read_text() for n in ("node1", "node2"))
                or run.poll() is not None
            ),
            180,
            "both nodes",
        )
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
        assert took < 20, (
            took
        )  # the script polls every 0.2 s and gives the nodes 10 s after SIGTERM; 400 frames take far longer
        assert f"site demo: the hub exited (status 137); the end of {out_dir}/hub.log:" in err
        assert "node node2: session" in err  # the log's end is shown
        assert "No such process" not in err + out and "Terminated" not in err and "Killed" not in err
        assert not any(Path(f"/proc/{p}").exists() and _cmdline(p) for p in nodes)  # the nodes were ended
        assert (out_dir / "mot").is_dir() and _demo_out_state() == before  # the nodes wrote under SITE_DEMO_OUT
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()


def test_run_sh_passes_shellcheck():
    proc = subprocess.run([dev_tool("shellcheck"), str(RUN_SH)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tracklets_keep_their_site_ids_through_an_outage_and_new_people_get_provisional_ones(tmp_path):
    """The hub dies after telling a node its two people's site ids; the node (its own engine,
    as edge.run) keeps those ids for them and gives a person first seen during the outage a
    provisional id, at the end, without waiting out its flush timeout (300 s: far from any slow
    machine's time)."""
    from test_site import fake_node, finish, read

    hub = HubProcess(tmp_path).start()
    a, out = fake_node(
        tmp_path, hub.endpoint, "a", "cam1", [0, 1], "--steps", "50", "--late", "2", "--local", "--flush-timeout", "300"
    )
    try:
        before = wait_for(lambda: len(read(out).get("ids", {})) == 2 and read(out)["ids"], 30, "site ids")
        hub.stop(signal.SIGKILL)
        started = time.monotonic()
        text = finish(a, timeout=200)
    finally:
        a.kill()
    data = read(out)
    assert time.monotonic() - started < 120, text
    assert f"site: the hub {hub.endpoint} stopped answering" in text
    assert data["final"]["cam1/1"] == before["cam1/1"] and data["final"]["cam1/2"] == before["cam1/2"]
    report = data["report"]
    assert data["final"]["cam1/3"] >= report["provisional_from"] >= PROVISIONAL  # the late person: decided here
    assert report["provisional_ids"] == 1 and report["answered"] and report["hub_outages"][0]["to"] is None
