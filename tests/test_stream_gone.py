"""A streaming node said gone by its region's hub (silent past ``--node-timeout-s``, e.g. cut off)
carries on in a new session (edge/stream/site_ids.py), with a real server, a real link cut
(sim/link_cut.py) and a region hub; the hub's side is in tests/test_stream.py."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from test_stream import run_hub_thread, wait_for

pytest.importorskip("nats")
from core.ports import free_port  # noqa: E402
from edge.site.tracklet_log import StepReader  # noqa: E402
from edge.stream.config import StreamConfig  # noqa: E402
from edge.stream.server import NatsServer  # noqa: E402
from edge.stream.site_ids import StreamSiteIds  # noqa: E402
from edge.wire.site_protocol import decode  # noqa: E402
from sim.link_cut import LinkCut  # noqa: E402


def node_steps(node_log: list) -> list:
    """The demo node's engine steps, ``(scene time, summaries)``, read back from its tracklet log."""
    reader = StepReader()
    steps = [reader.read(parts, "node1", "log") for parts in node_log]
    return [s for s in steps if s is not None]


def embedding_dim(node_log: list) -> int:
    """The demo node's embedding size, from its hello."""
    return int(decode(node_log[0], ("hello",)).header["embedding_dim"])


@contextlib.contextmanager
def node1_ids(url: str, dim: int, flush_timeout_s: float):
    """node1's site ids of region hall's stream at ``url``, closed at the end."""
    cfg = StreamConfig(servers=[url], region="hall", node="node1", flush_timeout_s=flush_timeout_s)
    ids = StreamSiteIds(cfg, ["cam1", "cam2", "cam3"], dim)
    try:
        yield ids
    finally:
        ids.close()


@contextlib.contextmanager
def region_and_node(tmp_path, dim: int):
    """A server, a link to it that the test cuts (``sim/link_cut.py``), region hall's hub on the
    server's side (2 s node timeout), and node1's site ids through the link: ``(hub, link, ids)``."""
    with NatsServer(free_port(), tmp_path / "store") as server, LinkCut(server.port) as link:
        hub, stop, thread = run_hub_thread(server.url, node_timeout_s=2.0)
        try:
            with node1_ids(link.url, dim, flush_timeout_s=30) as ids:
                wait_for(lambda: hub.leader and ids.connected, 30, "the hub active and the node told so")
                yield hub, link, ids
        finally:
            stop.set()
            thread.join(10)


def run(ids: StreamSiteIds, steps: list, finals: list) -> None:
    for now, summaries in steps:
        ids.update(summaries, now)
        finals.extend(ids.take_final())


def test_a_node_cut_off_past_the_node_timeout_carries_on_in_a_new_session_and_loses_no_final(
    tmp_path, node_log, caplog
):
    """The node's link is cut after a third of its run; the hub (2 s node timeout) says its session
    gone and makes its tracklets final. Once the link is back, the node reads that, starts a new
    session and sends again, in full, every tracklet the hub had not made final for it: every
    tracklet of the run gets its final site id from the hub, once (the gone session's own finals are
    not taken), and none is left to the end of the run's wait. Before, the node went on in the gone
    session, whose messages the hub refuses: its later tracklets got no site id at all."""
    steps = node_steps(node_log)
    ended = {s.key for _, summaries in steps for s in summaries if s.ended}
    dim = embedding_dim(node_log)
    third = len(steps) // 3
    finals: list = []
    with region_and_node(tmp_path, dim) as (hub, link, ids):
        first = ids.session
        run(ids, steps[:third], finals)
        assert ids.output.publisher.flush(30)
        link.cut()
        wait_for(lambda: hub.counters["said_gone"] == 1, 30, "the hub saying node1 gone")
        run(ids, steps[third : 2 * third], finals)  # buffered in the gone session
        link.restore()
        wait_for(lambda: ids._said_gone, 30, "the node reading that it was said gone")
        run(ids, steps[2 * third :], finals)
        ids.flush()
        finals.extend(ids.take_final())
        report = ids.report()
    keys = [k for k, _ in finals]
    assert ended <= set(keys), f"{len(ended - set(keys))} of {len(ended)} tracklets got no final site id"
    assert len(keys) == len(set(keys)), "a tracklet was made final twice"
    assert ids.session != first and report["new_sessions"] == 1
    assert "without a final id" not in caplog.text  # none left to the end of the run's wait
    assert hub.counters["said_gone"] == 1 and hub.steps.counters["failed_steps"] == 0


def test_a_node_said_gone_while_its_run_ends_takes_the_gone_step_s_finals(tmp_path, node_log, caplog):
    """The node's link is cut as its run ends: the hub says it gone (its tracklets final) while the
    node waits for its finals, and the link comes back during that wait. The node starts no new
    session (its run is over): the gone step's finals are its tracklets' final ids."""
    steps = node_steps(node_log)
    ended = {s.key for _, summaries in steps for s in summaries if s.ended}
    dim = embedding_dim(node_log)
    finals: list = []
    with region_and_node(tmp_path, dim) as (hub, link, ids):
        first = ids.session
        run(ids, steps[:-1], finals)
        assert ids.output.publisher.flush(30)
        link.cut()
        wait_for(lambda: hub.counters["said_gone"] == 1, 30, "the hub saying node1 gone")
        threading.Timer(1.0, link.restore).start()  # back while the node waits for its finals
        now, summaries = steps[-1]
        ids.update(summaries, now)
        ids.flush()
        finals.extend(ids.take_final())
        report = ids.report()
    keys = [k for k, _ in finals]
    assert ended <= set(keys), f"{len(ended - set(keys))} of {len(ended)} tracklets got no final site id"
    assert len(keys) == len(set(keys)) and ids.session == first and report["new_sessions"] == 0
    assert "without a final id" not in caplog.text, "the finals were the node's last site ids, not the hub's"


def test_a_run_ending_with_its_link_down_waits_flush_timeout_s_and_no_more(tmp_path, node_log, caplog):
    """The link is down as the run ends: flush waits out ``flush_timeout_s`` (2 s) for the stream
    and the hub, then close gives up at once and says what is lost. Close used to wait its own
    10 s again, so a run's end took the timeout plus 10 s and the thread joins."""
    steps = node_steps(node_log)
    dim = embedding_dim(node_log)
    with NatsServer(free_port(), tmp_path / "store") as server, LinkCut(server.port) as link:
        with node1_ids(link.url, dim, flush_timeout_s=2) as ids:
            run(ids, steps[:20], [])
            assert ids.output.publisher.flush(30)  # no hub: only the stream takes them
            link.cut()
            run(ids, steps[20:40], [])
            started = time.monotonic()
            ids.flush()
        took = time.monotonic() - started
    # flush's 2 s, a publish in flight timing out (2 s) and the threads' ends; 12 s and more before
    assert 2.0 <= took < 9.0, f"the run's end took {took:.1f} s"
    assert "summaries messages not in the region's stream at the run's end: lost" in caplog.text


def test_a_run_ending_with_its_link_up_sends_everything_and_its_bye_even_with_no_wait(tmp_path, node_log):
    """``flush_timeout_s: 0`` with the link up: the end does not wait for a hub, but the last
    steps and the ``bye`` still reach the stream (close gives them its own wait). Without the bye,
    the next run of the same files would carry this session on."""
    from test_stream import stream_messages

    from edge.stream.frames import unpack
    from edge.stream.names import Region

    steps = node_steps(node_log)
    dim = embedding_dim(node_log)
    with NatsServer(free_port(), tmp_path / "store") as server:
        with node1_ids(server.url, dim, flush_timeout_s=0) as ids:
            run(ids, steps[:40], [])
            ids.flush()
        kinds = [unpack(data)[1] for _, data in stream_messages(server.url, Region("hall").summaries_stream)]
    assert kinds == [b"hello"] + [b"summaries"] * 40 + [b"bye"]
