"""``python -m edge.view`` as a real process, fed by a real publisher: access rules, the API, the
event stream, a publisher that goes away and comes back, record and replay, CURVE."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import zmq
from conftest import REPO

from edge.view.feed import Feed
from edge.view.process import ViewProcess

TOKEN = "correct-horse-battery-staple-42"


def run_view(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge.view", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def test_non_local_address_needs_a_token_or_insecure():
    r = run_view("--bind", "0.0.0.0:0", env={"CLIPREID_VIEW_TOKEN": ""})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]  # one line
    assert "refusing to serve 0.0.0.0:0 without an access token" in r.stderr
    short = run_view("--bind", "0.0.0.0:0", env={"CLIPREID_VIEW_TOKEN": "short"})
    assert short.returncode == 2 and "at least 16 characters" in short.stderr
    view = ViewProcess("--insecure", bind="0.0.0.0:0", env={"CLIPREID_VIEW_TOKEN": ""})
    try:
        assert view.get("api/state")[0] == 200
    finally:
        view.close()


def test_token_is_required_by_every_route_and_a_link_with_it_sets_a_cookie():
    view = ViewProcess(env={"CLIPREID_VIEW_TOKEN": TOKEN})
    try:
        for path in ("", "api/state", "stream", "static/app.js", "crop/1", "frame/cam1"):
            status, body, _ = view.get(path)
            assert status == 401 and b"access token required" in body, path
        assert view.get("api/state", {"Authorization": "Bearer wrong-token-wrong-token"})[0] == 401
        assert view.get("api/state", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        status, body, headers = view.get(f"?token={TOKEN}")
        assert status == 200 and b"<title>clipreid-edge view</title>" in body
        cookie = headers["set-cookie"].split(";")[0]
        assert cookie == f"view_token={TOKEN}" and "HttpOnly" in headers["set-cookie"]
        assert view.get("api/state", {"Cookie": cookie})[0] == 200
    finally:
        view.close()


def test_live_events_reach_the_api_stream_and_images_and_the_view_survives_the_publisher_leaving():
    endpoint = "tcp://127.0.0.1:56431"
    feed = Feed(endpoint, rate=20, preview_fps=4).start()
    view = ViewProcess("--events", endpoint)
    try:
        state = view.wait_for(
            lambda s: (
                len(s["identities"]) >= 4
                and len(s["cameras"]) == 3
                and s["status"]["connection"]["state"] == "connected"
            ),
            what="identities and cameras",
        )
        card = next(c for c in state["identities"] if c["crop"])
        status, jpeg, headers = view.get(f"crop/{card['crop']}")
        assert status == 200 and headers["content-type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
        status, frame, _ = view.get("frame/cam1")
        assert status == 200 and frame[:2] == b"\xff\xd8"
        assert view.get("frame/nope")[0] == 404 and view.get("api/identity/999999")[0] == 404
        # a page on another domain rebound to 127.0.0.1 (DNS rebinding) reads nothing
        assert view.get("api/state", headers={"Host": "attacker.example:8080"})[0] == 400
        assert view.get(f"crop/{card['crop']}", headers={"Host": "attacker.example"})[0] == 400
        journey = json.loads(view.get(f"api/identity/{card['global_id']}")[1])
        assert len({s["camera"] for s in journey["sightings"]}) >= 2
        merged = view.wait_for(lambda s: any(c["merged_into"] for c in s["identities"]), what="a merge")
        absorbed = next(c for c in merged["identities"] if c["merged_into"])
        assert absorbed["merged_into"] == absorbed["global_id"] - 1
        with urllib.request.urlopen(view.url + "stream", timeout=10) as r:  # server-sent events: the full state first
            assert r.headers["content-type"].startswith("text/event-stream")
            first = r.readline().decode()
            assert first.startswith("data: ") and json.loads(first[6:])["full"] is True
        feed.close()
        gone = view.wait_for(lambda s: s["status"]["connection"]["state"] == "disconnected", what="disconnected")
        assert gone["status"]["connection"]["since"] > time.time() - 30
        received = gone["status"]["counters"]["received"]
        feed = Feed(endpoint, rate=20, preview_fps=4).start()  # the publisher comes back: the view reconnects by itself
        back = view.wait_for(
            lambda s: (
                s["status"]["connection"]["state"] == "connected" and s["status"]["counters"]["received"] > received + 5
            ),
            what="reconnection",
        )
        assert back["status"]["counters"]["publisher_restarts"] == 1  # its sequence numbers started again
    finally:
        feed.close()
        view.close()


def test_recording_replays_the_same_identities_at_the_chosen_speed(tmp_path):
    endpoint = "tcp://127.0.0.1:56432"
    record = tmp_path / "run.jsonl"
    listener = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.listen",
            "--endpoint",
            endpoint,
            "--record",
            str(record),
            "--quiet",
            "--count",
            "150",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    time.sleep(1.5)  # the listener connects before the publisher starts
    feed = Feed(endpoint, rate=30, preview_fps=4).start()
    try:
        assert listener.wait(60) == 0
    finally:
        feed.close()
    lines = record.read_text().splitlines()
    assert len(lines) == 150
    times = [json.loads(line)["t"] for line in lines]
    span = times[-1] - times[0]
    live = ViewProcess("--replay", str(record), "--speed", "1000")
    try:
        done = live.wait_for(
            lambda s: s["status"]["connection"]["state"] == "replay finished", what="end of the replay"
        )
    finally:
        live.close()
    assert done["status"]["counters"]["received"] == 150 and done["status"]["mode"] == "replay"
    assert done["status"]["clock"] == pytest.approx(times[-1], abs=1e-3)  # the recording's clock, not today's
    recorded_ids = set()
    for line in lines:
        parts = [__import__("base64").b64decode(p) for p in json.loads(line)["parts"]]
        if parts[0].startswith(b"identity/"):
            recorded_ids.add(json.loads(parts[1])["global_id"])
    assert {c["global_id"] for c in done["identities"]} == recorded_ids
    slow = ViewProcess("--replay", str(record), "--speed", "0.5")
    try:
        time.sleep(min(2.0, span))
        assert slow.state()["status"]["connection"]["state"] == "replay"  # half speed: still going
    finally:
        slow.close()
    r = run_view("--replay", str(tmp_path / "missing.jsonl"))
    assert r.returncode == 2 and "recording not found" in r.stderr


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_curve_publisher_is_read_with_the_views_own_key(tmp_path):
    import zmq.auth

    server_public_file, server_secret_file = zmq.auth.create_certificates(str(tmp_path), "server")
    server_public, server_secret = zmq.auth.load_certificate(server_secret_file)
    client_public_file, client_secret_file = zmq.auth.create_certificates(str(tmp_path), "view")
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.curve_server, pub.curve_secretkey, pub.curve_publickey = True, server_secret, server_public
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind("tcp://127.0.0.1:56433")
    # the publisher's .key file, as edge.listen takes it (the Z85 text works too: below)
    view = ViewProcess(
        "--events", "tcp://127.0.0.1:56433", "--server-key", server_public_file, "--key-file", client_secret_file
    )
    try:
        header = {
            "schema": "clipreid-edge.events",
            "version": 2,
            "seq": 1,
            "event": "new",
            "global_id": 8,
            "cameras": ["cam1"],
            "camera": "cam1",
            "local_id": 1,
            "capture_ts": 5.0,
            "last_seen": 5.0,
        }
        deadline = time.monotonic() + 20
        while not view.state()["identities"]:
            assert time.monotonic() < deadline, view.state()
            pub.send_multipart([b"identity/8", json.dumps(header).encode()])
            time.sleep(0.2)
        assert view.state()["status"]["connection"]["state"] == "connected"
    finally:
        view.close()
        pub.close(0)
    bad = run_view("--server-key", "tooshort")
    assert bad.returncode == 2 and "40-character Z85 public key" in bad.stderr
    public_only = run_view("--server-key", server_public.decode(), "--key-file", client_public_file)
    assert public_only.returncode == 2 and "needs its secret one" in public_only.stderr
