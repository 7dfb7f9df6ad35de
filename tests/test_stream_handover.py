"""Across regions: a person who leaves region hall through its boundary camera keeps their id in
region yard (the hand-over reaches yard's stream and its engine welcomes the identity), only within
the transition's window, not for somebody else; ids from another region's range are refused; and
with real servers two region hubs hand over through the yard's stream, exactly once."""

import json
import threading

import numpy as np
import pytest

pytest.importorskip("nats")
from test_stream import published, stream_messages, wait_for  # noqa: E402

from core.embeddings import Embeddings  # noqa: E402
from core.ports import free_port  # noqa: E402
from edge.identity import EngineSettings, TrackletSummary  # noqa: E402
from edge.identity.topology import Transition  # noqa: E402
from edge.site.tracklet_log import SummaryWriter  # noqa: E402
from edge.stream.handover import handover_message, parse_hand_over, read_handover  # noqa: E402
from edge.stream.names import HANDOVER_HEADER, NODE_HEADER, SESSION_HEADER, Region  # noqa: E402
from edge.stream.publisher import SummaryPublisher  # noqa: E402
from edge.stream.region_hub import RegionHub  # noqa: E402
from edge.stream.region_steps import RegionSteps  # noqa: E402
from edge.stream.server import NatsServer  # noqa: E402

HALL, YARD = 1_000_000, 2_000_000  # the regions' id bases


def unit(*v):
    v = np.asarray(v + (0.0,) * (4 - len(v)), np.float32)
    return v / np.linalg.norm(v)


def tracklet(cam, local, vec, first, last, ended):
    box = np.array([100.0, 100.0, 140.0, 200.0])
    return TrackletSummary(cam, local, first, last, Embeddings(vec[None]), 3, 3.0, box, box, None, ended)


def node_messages(node, cameras, steps):
    """What a node publishes for ``steps`` [(now, [summaries])]: its hello, then one message a step."""
    out = []
    writer = SummaryWriter(lambda parts, now: out.append(parts), cameras, 4, node, "s1")
    for now, summaries in steps:
        writer.write(now, summaries)
    return out


def settings():
    return EngineSettings(threshold=0.8, scale=0.1, transitions={("cam1", "cam3"): Transition(2.0, 30.0)})


def hall_steps():
    """P at cam1 (the boundary camera), Q at cam2, both gone by t=5."""
    p, q = unit(1), unit(0, 1)
    return [
        (2.0, [tracklet("cam1", 1, p, 0, 2, False), tracklet("cam2", 1, q, 0, 2, False)]),
        (5.0, [tracklet("cam1", 1, p, 0, 5, True), tracklet("cam2", 1, q, 0, 5, True)]),
    ]


def yard_steps(arrives):
    """P again at cam3 ``arrives`` s after t=5, and R, whom nobody handed over."""
    t = 5.0 + arrives
    p, r = unit(1, 0.1), unit(0, 0, 1)
    return [
        (t + 2, [tracklet("cam3", 1, p, t, t + 2, False), tracklet("cam3", 2, r, t, t + 2, False)]),
        (t + 4, [tracklet("cam3", 1, p, t, t + 4, True), tracklet("cam3", 2, r, t, t + 4, True)]),
    ]


def run_hall():
    hall = RegionSteps(Region("hall"), settings(), hand_over={"cam1": "yard"}, id_base=HALL)
    handed, ids = [], {}
    for position, parts in enumerate(node_messages("hallnode", ["cam1", "cam2"], hall_steps()), start=1):
        hall.take(position, parts, {NODE_HEADER: "hallnode", SESSION_HEADER: "s1"})
        handed += hall.outgoing
        ids.update({k: hall.engine.global_id(k) for k in hall.engine.assignment})
    return hall, handed, ids


def run_yard(handed, arrives=8.0):
    """Yard's stream: the hand-overs first (they were sent when P left), then the yard node; the
    yard ids of P and R."""
    yard = RegionSteps(Region("yard"), settings(), id_base=YARD)
    position = 0
    for o in handed:
        position += 1
        yard.take(position, o.parts, {HANDOVER_HEADER: "hall"})
    for parts in node_messages("yardnode", ["cam3"], yard_steps(arrives)):
        position += 1
        yard.take(position, parts, {NODE_HEADER: "yardnode", SESSION_HEADER: "s1"})
    return yard, yard.engine.global_id(("cam3", 1)), yard.engine.global_id(("cam3", 2))


def test_a_person_leaving_through_the_boundary_camera_keeps_their_id_in_the_next_region():
    hall, handed, ids = run_hall()
    p_id = ids[("cam1", 1)]
    assert HALL < p_id < YARD and [o.region for o in handed] == ["yard"]  # P only: cam2 is no boundary
    assert read_handover(handed[0].parts)[1].global_id == p_id
    yard, p_yard, r_yard = run_yard(handed)
    assert p_yard == p_id, "P did not keep the id hall gave"
    assert r_yard > YARD and r_yard != p_id
    assert yard.counters["handed_in"] == 1 and hall.counters["handed_over"] == 1
    _, p_alone, _ = run_yard([])  # no hand-over: P is somebody new to the yard
    assert p_alone > YARD


def test_a_hand_over_joins_only_within_the_transition_window():
    _, handed, ids = run_hall()
    _, p_late, _ = run_yard(handed, arrives=45.0)  # cam1 -> cam3 takes 2-30 s
    assert p_late != ids[("cam1", 1)] and p_late > YARD


def test_an_id_of_the_receiving_region_s_own_range_is_refused(caplog):
    yard = RegionSteps(Region("yard"), settings(), id_base=YARD)
    for position, parts in enumerate(node_messages("yardnode", ["cam3"], yard_steps(8.0)), start=1):
        yard.take(position, parts, {NODE_HEADER: "yardnode", SESSION_HEADER: "s1"})
    own = yard.engine.global_id(("cam3", 1))
    ident = yard.engine.identities[own]
    yard.take(99, handover_message("hall", ident, None, 1.0), {HANDOVER_HEADER: "hall"})
    assert yard.counters["handovers_refused"] == 1 and "its own id range (--id-base)" in caplog.text
    with pytest.raises(ValueError, match="REGION:CAMERA"):
        parse_hand_over(["yard"])
    with pytest.raises(ValueError, match="borders both"):
        parse_hand_over(["yard:cam3", "dock:cam3"])


def hand_overs_in(url, region):
    """The HANDOVER header of each hand-over in ``region``'s summaries stream."""
    return [h[HANDOVER_HEADER] for h, _ in stream_messages(url, region.summaries_stream) if HANDOVER_HEADER in h]


def yard_decided(url):
    """The yard node's local id -> the global id yard's decision stream gave it."""
    got = published(url, Region("yard"))
    return {d["local_id"]: d["global_id"] for _, body in got for d in body["decisions"] if d.get("node") == "yardnode"}


def test_two_region_hubs_hand_over_through_the_yard_s_stream(tmp_path):
    """Real server, both regions' hubs running: hall hands P over into yard's stream (stored
    once), and yard's decision stream gives P's yard tracklet the id hall gave."""
    with NatsServer(free_port(), tmp_path / "store") as server:
        hubs = [
            RegionHub([server.url], Region("hall"), settings(), "hall-a", hand_over={"cam1": "yard"}, id_base=HALL),
            RegionHub([server.url], Region("yard"), settings(), "yard-a", id_base=YARD),
        ]
        stop = threading.Event()
        threads = [threading.Thread(target=h.run, args=(stop,), daemon=True) for h in hubs]
        for t in threads:
            t.start()
        hall_node = SummaryPublisher([server.url], Region("hall"), "hallnode", "s1")
        yard_node = SummaryPublisher([server.url], Region("yard"), "yardnode", "s1")
        try:
            for parts in node_messages("hallnode", ["cam1", "cam2"], hall_steps()):
                hall_node.send(parts)
            wait_for(lambda: hubs[1].stats()["handed_in"] == 1, 30, "yard welcomed P")
            for parts in node_messages("yardnode", ["cam3"], yard_steps(8.0)):
                yard_node.send(parts)
            assert yard_node.flush(10)
            wait_for(lambda: len(yard_decided(server.url)) == 2, 30, "yard decided P and R")
            got = yard_decided(server.url)
            in_stream = hand_overs_in(server.url, Region("yard"))
        finally:
            hall_node.close(0)
            yard_node.close(0)
            stop.set()
            for t in threads:
                t.join(10)
    p_id = next(g for g, i in hubs[0].engine.identities.items() if "cam1" in i.cameras)
    assert got[1] == p_id and got[2] > YARD
    assert in_stream == ["hall"], "the hand-over is not in yard's stream exactly once"
    assert hubs[0].stats()["handed_over"] == 1 and hubs[1].stats()["handed_in"] == 1
    assert json.dumps(hubs[1].stats())  # the stats stay JSON


def test_a_node_with_both_a_zeromq_hub_and_site_ids_from_a_stream_is_refused_in_one_line(tmp_path):
    from test_edge_run import cams_yaml

    from core.configio import ConfigError
    from edge.runtime.config import load_edge_config

    cams = [{"id": "cam1", "source": "synthetic://demo?camera=cam1", "realtime": False}]
    stream = {"servers": ["nats://127.0.0.1:4222"], "region": "hall", "node": "n1"}
    path = cams_yaml(tmp_path, cams, free_port(), site={"node": "n1", "hub": "tcp://127.0.0.1:56812"}, stream=stream)
    with pytest.raises(ConfigError, match="site: and stream: both give this node site ids: choose one"):
        load_edge_config(path)
    assert load_edge_config(path, ["stream.site_ids=false"]).site_node  # only publishing: the ZeroMQ hub decides


def test_a_zeromq_site_node_that_also_publishes_to_a_stream_sends_its_summaries_there(tmp_path):
    """``site:`` (the ZeroMQ hub decides) with ``stream: {site_ids: false}`` (only publishing): the
    pipeline writes every step to the stream and ends it with bye (it once left the stream at the
    hello, the writing given to an identity service that does not stream)."""
    from test_edge_run import cams_yaml

    from edge.runtime.capture_loop import run_pipeline
    from edge.runtime.config import load_edge_config
    from edge.stream.frames import unpack

    cams = [{"id": "cam1", "source": "synthetic://demo?camera=cam1", "realtime": False}]
    with NatsServer(free_port(), tmp_path / "store") as server:
        stream = {"servers": [server.url], "region": "hall", "node": "n1", "site_ids": False, "flush_timeout_s": 5}
        site = {"node": "n1", "hub": f"tcp://127.0.0.1:{free_port()}", "hub_timeout_s": 0.5, "flush_timeout_s": 0}
        path = cams_yaml(
            tmp_path, cams, free_port(), publisher={"enabled": False}, run={"max_frames": 40}, site=site, stream=stream
        )
        report = run_pipeline(load_edge_config(path))
        kinds = [unpack(data)[1] for _, data in stream_messages(server.url, Region("hall").summaries_stream)]
    assert kinds[0] == b"hello" and kinds[-1] == b"bye" and kinds.count(b"summaries") >= 40, kinds
    assert report["stream"]["sent"] == len(kinds) and report["stream"]["buffered"] == 0, report["stream"]
