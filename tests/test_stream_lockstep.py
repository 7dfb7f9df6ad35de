"""A region of two file-camera nodes in lockstep (edge/stream/lockstep.py): its hubs decide by scene
time, so the order messages reach the stream (a node cut off, replaying its buffer) changes nothing.

The two nodes are the demo node's log split by camera (node1: cam1, node2: cam2 and cam3): in
lockstep their steps together are the one node's steps, so the hub must decide exactly what it
decides for that one node."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import types

import pytest
from test_stream import published, run_hub_thread, settings, stream_messages, wait_for

pytest.importorskip("nats")
from nats.js.errors import NotFoundError  # noqa: E402

from core.ports import free_port  # noqa: E402
from edge.stream import checkpoint  # noqa: E402
from edge.stream.frames import pack  # noqa: E402
from edge.stream.names import (  # noqa: E402
    GONE_HEADER,
    MSG_ID_HEADER,
    NODE_HEADER,
    PART_HEADER,
    SESSION_HEADER,
    STEP_HEADER,
    Region,
)
from edge.stream.publisher import SummaryPublisher  # noqa: E402
from edge.stream.region_hub import RegionHub  # noqa: E402
from edge.stream.region_steps import Decided, RegionSteps  # noqa: E402
from edge.stream.server import NatsServer  # noqa: E402
from edge.wire.site_protocol import decode, decode_tracklets, encode, encode_tracklets  # noqa: E402
from sim.link_cut import LinkCut  # noqa: E402

HALL = Region("hall")
NODES = {"node1": ("cam1",), "node2": ("cam2", "cam3")}


def split(node_log: list) -> dict[str, list]:
    """Each node's messages: the one node's, each step's tracklets of the node's cameras (a step
    with none is kept, as a node sends one message per step)."""
    out: dict[str, list] = {n: [] for n in NODES}
    dim = 0
    for parts in node_log:
        msg = decode(parts, ("hello", "summaries", "bye"))
        for node, cams in NODES.items():
            if msg.kind == "hello":
                dim = int(msg.header["embedding_dim"])
                out[node].append(encode("hello", {**msg.header, "node": node, "cameras": list(cams)}))
            elif msg.kind == "bye":
                out[node].append(encode("bye", msg.header))
            else:
                now, items = decode_tracklets(decode(parts, ("summaries",)), dim)
                out[node].append(encode_tracklets(msg.header["seq"], now, [w for w in items if w.camera in cams]))
    return out


def fair(messages: dict[str, list]) -> list[tuple[str, list]]:
    """node1's and node2's messages in turn: the stream of a fault-free run."""
    return [(n, m[i]) for i in range(len(messages["node1"])) for n, m in messages.items()]


def cut(messages: dict[str, list], start: int, end: int, node: str = "node2") -> list[tuple[str, list]]:
    """``node`` cut off from message ``start`` to ``end``: the other's messages meanwhile first, then
    ``node``'s buffer, then both in turn again."""
    other = next(n for n in messages if n != node)
    return (
        fair({n: m[:start] for n, m in messages.items()})
        + [(other, m) for m in messages[other][start:end]]
        + [(node, m) for m in messages[node][start:end]]
        + fair({n: m[end:] for n, m in messages.items()})
    )


def finals(bodies) -> dict:
    """Engine key -> final site id, over decision messages."""
    return {tuple(f["key"]): f["global_id"] for body in bodies for f in body["final"]}


def decide(stream: list[tuple[str, list]], lockstep=("node1", "node2"), hub=None, start=1) -> dict[tuple, dict]:
    """Each decision message (JSON) by (stream position, part), ``stream`` from position ``start`` on."""
    hub = hub or RegionSteps(HALL, settings(), lockstep=lockstep)
    out = {}
    for position, (node, parts) in enumerate(stream[start - 1 :], start=start):
        decided = hub.take(position, parts, {NODE_HEADER: node, SESSION_HEADER: f"s-{node}"})
        for part, d in enumerate(decided):
            out[(position, part)] = json.loads(d.body)
    return out


def content(decided: dict) -> list[dict]:
    """The decision messages in order, without where in the stream each was made or which node and
    session sent each tracklet (what differs between the one node and the two)."""

    def entry(e):
        return {k: v for k, v in e.items() if k not in ("node", "session")}

    out = []
    for _, body in sorted(decided.items()):
        body = {k: v for k, v in body.items() if k not in ("step", "part")}
        out.append({k: [entry(e) for e in v] if isinstance(v, list) else v for k, v in body.items()})
    return out


def people(final: dict) -> set[frozenset]:
    """The tracklets each site id groups, whatever the ids' names."""
    groups: dict = {}
    for key, gid in final.items():
        groups.setdefault(gid, set()).add(key)
    return {frozenset(g) for g in groups.values()}


@pytest.fixture(scope="module")
def one_node(node_log):
    """The one node's decision messages (the fault-free run of one process over the three cameras)."""
    return RegionSteps(HALL, settings()).decide_all(node_log, "node1", "s1")


def test_in_lockstep_two_nodes_are_decided_as_one_whatever_order_their_messages_reach_the_stream(node_log, one_node):
    messages = split(node_log)
    n = len(messages["node1"])
    orders = {
        "fair": fair(messages),
        "node2 cut off for the middle third": cut(messages, n // 3, 2 * n // 3),
        "node2 cut off all along": cut(messages, 1, n),
        "node1 cut off all along": cut(messages, 1, n, "node1"),
    }
    reference = content(one_node)
    assert len(finals(one_node.values())) > 20
    for what, stream in orders.items():
        got = decide(stream)
        assert finals(got.values()) == finals(one_node.values()), what
        # every message in order (the same engine steps), but the end: the two nodes' byes make
        # their tracklets final in a message each, the one node's in one
        assert content(got)[:-2] == reference[:-1], what
    # free running, the order matters: node2's buffer, decided after node1's later steps, is decided
    # otherwise, and not only under other names (people split or merged)
    free = finals(decide(orders["node2 cut off all along"], lockstep=()).values())
    assert people(free) != people(finals(one_node.values()))


def test_in_lockstep_a_duplicate_or_a_refused_node_takes_no_step_s_turn(node_log, one_node):
    """A message stored twice (past the server's duplicate window) and a listed node whose hello is
    refused (another model) change nothing: the duplicate is no step, and the refused node is not
    waited for."""
    messages = split(node_log)
    stream = fair(messages)
    stream.insert(40, stream[30])  # node1's or node2's message again, ten messages on
    hello = decode(messages["node2"][0], ("hello",)).header
    other_model = encode("hello", {**hello, "node": "node3", "cameras": ["cam9"], "embedding_dim": 7})
    stream[20:20] = [("node3", other_model), ("node3", messages["node2"][5])]
    dim = int(hello["embedding_dim"])
    hub = RegionSteps(HALL, settings(), embedding_dim=dim, lockstep=("node1", "node2", "node3"))
    got = decide(stream, hub=hub)
    assert content(got)[:-2] == content(one_node)[:-1] and finals(got.values()) == finals(one_node.values())
    assert hub.counters["malformed"] == 2 and hub.lockstep_stats() == {"held": 0, "waiting_for": [], "absent": []}


def test_a_lockstep_hub_continues_from_a_checkpoint_holding_messages_not_decided_yet(node_log):
    messages = split(node_log)
    n = len(messages["node1"])
    stream = cut(messages, n // 3, 2 * n // 3)
    expected = decide(stream)
    writer = RegionSteps(HALL, settings(), lockstep=("node1", "node2"))
    at = n // 3 * 2 + n // 6  # within node1's messages while node2 is cut off: node1's held
    decide(stream[:at], hub=writer)
    assert writer.lockstep_stats() == {"held": at - 2 * (n // 3), "waiting_for": ["node2"], "absent": []}
    blob = checkpoint.dump(HALL, writer.state(), writer.fingerprint)
    reader = RegionSteps(HALL, settings(), lockstep=("node1", "node2"))
    state = checkpoint.load(blob, HALL, reader.fingerprint)
    assert state is not None
    reader.load(state)
    got = decide(stream, hub=reader, start=at + 1)
    assert got == {p: body for p, body in expected.items() if p[0] > at}
    # a hub not in lockstep, or with other nodes, must not continue from it
    assert RegionSteps(HALL, settings()).fingerprint != writer.fingerprint
    assert RegionSteps(HALL, settings(), lockstep=("node1",)).fingerprint != writer.fingerprint
    # a checkpoint written before nodes could be said absent (no `absent` in its Lockstep) still loads
    del writer.lockstep.__dict__["absent"]
    state = checkpoint.load(checkpoint.dump(HALL, writer.state(), writer.fingerprint), HALL, reader.fingerprint)
    assert state is not None and state.lockstep.absent == set()


def test_a_lockstep_node_said_gone_no_longer_holds_the_region_up(node_log):
    """node2 stops after a third of the run without bye; node1's later steps wait for it until the
    active hub says it gone: then its tracklets end and are final, and node1 goes on alone."""
    messages = split(node_log)
    n = len(messages["node1"])
    hub = RegionSteps(HALL, settings(), lockstep=("node1", "node2"))
    stream = fair({m: p[: n // 3] for m, p in messages.items()}) + [("node1", m) for m in messages["node1"][n // 3 :]]
    before = decide(stream, hub=hub)
    assert hub.lockstep_stats() == {"held": n - n // 3, "waiting_for": ["node2"], "absent": []}
    gone = hub.take(len(stream) + 1, [], {NODE_HEADER: "node2", SESSION_HEADER: "s-node2", GONE_HEADER: "hub-a"})
    assert len(gone) > 1 and hub.lockstep_stats() == {"held": 0, "waiting_for": [], "absent": []}
    body = json.loads(gone[0].body)  # the gone step first, then node1's held steps, each its own message
    assert body["gone"] == [{"node": "node2", "session": "s-node2"}]
    node2 = {tuple(f["key"]) for f in body["final"] if f["node"] == "node2"}
    assert node2 and [json.loads(d.body).get("part", 0) for d in gone] == list(range(len(gone)))
    cam1 = {k for k in finals([*before.values(), *(json.loads(d.body) for d in gone)]) if k[0] == "cam1"}
    assert cam1 == {k for k in finals(decide(fair(messages)).values()) if k[0] == "cam1"}


def test_a_lockstep_region_refuses_a_node_it_does_not_list_once_in_its_log(node_log, caplog):
    messages = split(node_log)
    hub = RegionSteps(HALL, settings(), lockstep=("node1",))
    with caplog.at_level(logging.WARNING, "edge.stream"):
        got = decide([("node2", m) for m in messages["node2"][:20]], hub=hub)
    assert got == {} and hub.counters["malformed"] == 20
    said = [r.getMessage() for r in caplog.records if "lockstep nodes" in r.getMessage()]
    assert said == ["stream: node node2 is not one of region hall's lockstep nodes"]


def test_a_lockstep_hub_waits_for_a_node_cut_off_says_so_and_then_decides_as_without_it(tmp_path, node_log, caplog):
    """A real server, node2's publisher through a link the test cuts (sim/link_cut.py): while cut,
    the hub holds node1's steps and says it waits for node2; once the link is back, its decision
    stream's finals are the one node's, every one."""
    messages = split(node_log)
    n = len(messages["node1"])
    expected = finals(decide(fair(messages)).values())
    with NatsServer(free_port(), tmp_path / "store") as server, LinkCut(server.port) as link:
        hub, stop, thread = run_hub_thread(server.url, lockstep=("node1", "node2"))
        node1 = SummaryPublisher([server.url], HALL, "node1", "s-node1")
        node2 = SummaryPublisher([link.url], HALL, "node2", "s-node2")
        try:
            with caplog.at_level(logging.INFO, "edge.stream"):
                for i in range(n // 3):
                    node1.send(messages["node1"][i])
                    node2.send(messages["node2"][i])
                assert node2.flush(30)
                link.cut()
                for i in range(n // 3, n):
                    node1.send(messages["node1"][i])
                    node2.send(messages["node2"][i])
                assert node1.flush(30)
                wait_for(lambda: hub.stats().get("held", 0) >= n - n // 3, 30, "node1's later messages held")
                assert hub.stats()["waiting_for"] == ["node2"]
                wait_for(lambda: any("waits for node node2" in r.getMessage() for r in caplog.records), 15, "said")
                link.restore()
                assert node2.flush(60)
                wait_for(lambda: hub.stats()["held"] == 0 and not hub.recent, 60, "everything decided and published")
                wait_for(lambda: any("no longer waits" in r.getMessage() for r in caplog.records), 15, "said")
            got = published(server.url, HALL)
            assert finals(body for _, body in got) == expected
        finally:
            stop.set()
            thread.join(10)
            for p in (node1, node2):
                p.close(0)


def test_a_real_lockstep_hub_says_a_node_that_never_starts_absent_and_decides_as_without_it(tmp_path, node_log):
    """A real server and hub (node timeout 1.5 s): node1 runs to its bye, node2 never starts. The
    active hub says node2 absent in the region's stream, once, at a quiet moment, and its decision
    stream then holds exactly a region of node1 alone's decisions."""
    messages = split(node_log)
    alone = decide([("node1", m) for m in messages["node1"]], lockstep=("node1",))
    with NatsServer(free_port(), tmp_path / "store") as server:
        hub, stop, thread = run_hub_thread(server.url, lockstep=("node1", "node2"), node_timeout_s=1.5)
        node1 = SummaryPublisher([server.url], HALL, "node1", "s-node1")
        try:
            for parts in messages["node1"]:
                node1.send(parts)
            assert node1.flush(30)
            wait_for(lambda: hub.counters["said_absent"] and hub.stats()["held"] == 0 and not hub.recent, 30, "absent")
            said = [h for h, _ in stream_messages(server.url, HALL.summaries_stream) if GONE_HEADER in h]
            assert [(h[NODE_HEADER], h[SESSION_HEADER]) for h in said] == [("node2", "")]
            got = {(step, body.get("part", 0)): body for step, body in published(server.url, HALL)}
            assert content(got) == content(alone) and finals(got.values()) == finals(alone.values())
        finally:
            stop.set()
            thread.join(10)
            node1.close(0)


class FakeStream:
    """The JetStream calls a region hub publishes with: what it publishes, and a decision stream's last headers."""

    def __init__(self, last=None):
        self.sent, self.last = [], last

    async def publish(self, subject, body, timeout, headers):
        self.sent.append(headers)
        return types.SimpleNamespace(duplicate=False)

    async def get_last_msg(self, stream, subject):
        if self.last is None:
            raise NotFoundError
        return types.SimpleNamespace(headers=self.last)


def test_a_standby_taking_over_between_two_parts_of_a_position_publishes_the_rest_once():
    """In lockstep one stream position can give several decision messages (parts); the active hub
    died after part 1 of position 5: its successor publishes part 2, then position 6, each once."""
    hub = RegionHub(["nats://127.0.0.1:1"], HALL, settings(), "hub-b", lockstep=("node1", "node2"))
    assert asyncio.run(hub._last_published(FakeStream())) == (0, 0)
    last = {STEP_HEADER: "5", PART_HEADER: "1"}
    hub.published_upto, hub.published_part = asyncio.run(hub._last_published(FakeStream(last)))
    body = Decided(b"{}", [])
    hub.recent.extend([(5, 0, body), (5, 1, body), (5, 2, body), (6, 0, body)])
    hub.leader, js = True, FakeStream()
    asyncio.run(hub._publish_recent(js))
    assert [h[MSG_ID_HEADER] for h in js.sent] == ["hall-5-2", "hall-6"]
    assert [h.get(PART_HEADER) for h in js.sent] == ["2", None] and not hub.recent
    assert (hub.published_upto, hub.published_part) == (6, 0)


class NoLease:
    """A lease bucket another hub holds: this hub stands by (nothing published)."""

    async def create(self, key, value):
        raise RuntimeError("held by another hub")

    async def get(self, key):
        raise RuntimeError("not readable")


def test_a_lockstep_hub_watches_for_silence_the_sessions_that_go_on(node_log):
    """The hub's silence watch, message by message (RegionHub._take): a listed node's hello refused
    (another model) leaves its live session watched (before, it was dropped and never said gone:
    the region waited for it for good); a bye still held ends the watch at once (no gone said for
    a node that finished); a new session's hello held behind its node's steps ends the old
    session's watch once it is read."""
    messages = split(node_log)
    hello = decode(messages["node1"][0], ("hello",)).header
    dim = int(hello["embedding_dim"])
    hub = RegionHub(["nats://127.0.0.1:1"], HALL, settings(), "hub-a", embedding_dim=dim, lockstep=("node1", "node2"))
    watched = []

    def take(node, session, parts):
        at = datetime.datetime.now(datetime.timezone.utc)
        metadata = types.SimpleNamespace(timestamp=at, sequence=types.SimpleNamespace(stream=hub.position + 1))
        msg = types.SimpleNamespace(data=pack(parts), headers={NODE_HEADER: node, SESSION_HEADER: session},
                                    metadata=metadata)  # fmt: skip
        asyncio.run(hub._take(FakeStream(), NoLease(), msg))
        watched.append(set(hub.silent.last))

    take("node1", "s1", messages["node1"][0])
    take("node2", "a", messages["node2"][0])
    take("node1", "s2", encode("hello", {**hello, "embedding_dim": 7}))  # refused
    assert watched[-1] == {("node1", "s1"), ("node2", "a")}
    take("node1", "s1", messages["node1"][1])  # held: node2 has no step yet
    take("node1", "s3", encode("hello", {**hello, "node": "node1"}))  # node1 again: held behind its step
    assert watched[-1] == {("node1", "s1"), ("node1", "s3"), ("node2", "a")}
    take("node2", "a", messages["node2"][1])  # both steps decided, then node1's new hello read
    assert watched[-1] == {("node1", "s3"), ("node2", "a")}
    take("node1", "s3", messages["node1"][2])  # held
    take("node1", "s3", messages["node1"][-1])  # its bye, held behind it
    assert watched[-1] == {("node2", "a")} and hub.steps.lockstep_stats()["held"] == 2
    assert hub.steps.live_sessions() == {("node2", "a")}  # what a hub starting from a checkpoint would watch


def test_hand_overs_of_one_position_s_parts_have_ids_of_their_own(node_log):
    """node2 says hello and bye at once while node1's steps are held: its bye lets the hub decide
    all of them at one position, in many parts. People handed over at cam1 in those parts keep an
    id each (the server would store a repeated one once), and they are node1's hand-overs alone."""
    messages = split(node_log)
    one = messages["node1"]

    def hand_overs(stream, lockstep):
        hub = RegionSteps(HALL, settings(), hand_over={"cam1": "yard"}, id_base=1_000_000, lockstep=lockstep)
        out = []
        for position, (node, parts) in enumerate(stream, start=1):
            for d in hub.take(position, parts, {NODE_HEADER: node, SESSION_HEADER: f"s-{node}"}):
                out += [o.msg_id for o in d.outgoing]
        return out

    alone = hand_overs([("node1", m) for m in one], ())
    stream = [("node1", one[0]), ("node2", messages["node2"][0]), *(("node1", m) for m in one[1:-1])]
    stream += [("node2", messages["node2"][-1]), ("node1", one[-1])]
    held = hand_overs(stream, ("node1", "node2"))
    assert len(set(held)) == len(set(alone)) >= 3 and len(held) == len(alone)
    assert [i.rsplit("-", 2)[1] for i in held] == [i.rsplit("-", 2)[1] for i in alone]  # the same people
    bye = len(stream) - 1
    assert all(i.split("-")[2].split(".")[0] == str(bye) for i in held)  # all at node2's bye: parts


def test_a_lockstep_node_never_heard_is_said_absent_and_then_no_longer_holds_the_region_up(node_log, caplog):
    """node2 never starts: node1's steps wait for it (before, for good). The active hub's silence
    watch covers it from the first held step; past --node-timeout-s it says it absent (a gone
    message without a session), and every hub then decides node1's steps as a region of node1
    alone would. node2's hello, when it comes, makes the region wait for it again."""
    messages = split(node_log)
    n = len(messages["node1"])
    hub = RegionHub(["nats://127.0.0.1:1"], HALL, settings(), "hub-a", node_timeout_s=60, lockstep=("node1", "node2"))
    js = FakeStream()  # (the hub not leader while it reads: its decisions stay in `recent`)
    js.stream_info = lambda name: asyncio.sleep(
        0, types.SimpleNamespace(state=types.SimpleNamespace(last_seq=hub.position))
    )
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=120)

    def take(node, parts, headers=None, at=long_ago):
        metadata = types.SimpleNamespace(timestamp=at, sequence=types.SimpleNamespace(stream=hub.position + 1))
        headers = headers or {NODE_HEADER: node, SESSION_HEADER: f"s-{node}"}
        asyncio.run(
            hub._take(js, NoLease(), types.SimpleNamespace(data=pack(parts), headers=headers, metadata=metadata))
        )

    now = datetime.datetime.now(datetime.timezone.utc)
    for i, parts in enumerate(messages["node1"][: n // 2]):
        take("node1", parts, at=now if i == n // 2 - 1 else long_ago)  # node1 heard just now
    assert hub.steps.lockstep_stats() == {"held": n // 2 - 1, "waiting_for": ["node2"], "absent": []} and not hub.recent
    with caplog.at_level(logging.WARNING, "edge.stream"):
        asyncio.run(hub._say_gone(js))  # waited for since two minutes ago: said absent
    assert [h[SESSION_HEADER] for h in js.sent] == [""] and hub.counters["said_absent"] == 1
    assert any("never heard" in r.getMessage() and "says it absent" in r.getMessage() for r in caplog.records)
    take("node2", [], js.sent[0])  # the absent message, read back from the stream
    assert hub.steps.lockstep_stats() == {"held": 0, "waiting_for": ["node1"], "absent": ["node2"]}  # (node1's next)
    asyncio.run(hub._say_gone(js))
    assert hub.counters["said_absent"] == 1  # said once

    alone = RegionSteps(HALL, settings(), lockstep=("node1",))
    expected = content(decide([("node1", m) for m in messages["node1"][: n // 2]], hub=alone))
    assert len(expected) >= 3  # (cam1 sees four people in this half)
    assert content({(step, part): json.loads(d.body) for step, part, d in hub.recent}) == expected

    take("node2", messages["node2"][0], at=now)  # node2's hello: waited for again from here
    take("node1", messages["node1"][n // 2], at=now)
    assert hub.steps.lockstep_stats() == {"held": 1, "waiting_for": ["node2"], "absent": []}
    asyncio.run(hub._say_gone(js))
    assert hub.counters["said_absent"] == 1 and hub.counters["said_gone"] == 0  # heard now: its session watched


class FreeLease:
    """A lease bucket nobody holds: this hub takes it."""

    async def create(self, key, value):
        return 1


def test_a_standby_forgets_what_was_published_and_says_what_it_can_no_longer_publish(node_log, monkeypatch, caplog):
    """A standby keeps the steps it decided until its active hub has published them (it reads the
    decision stream's last step every TRIM_EVERY_S): a long run no longer fills what it keeps. One
    so far behind that it dropped steps never published says so when it takes over."""
    from edge.stream import region_hub

    monkeypatch.setattr(region_hub, "KEEP_STEPS", 3)
    hub = RegionHub(["nats://127.0.0.1:1"], HALL, settings(), "hub-b")
    for position, parts in enumerate(node_log[:60], start=1):
        metadata = types.SimpleNamespace(timestamp=None, sequence=types.SimpleNamespace(stream=position))
        msg = types.SimpleNamespace(data=pack(parts), headers={NODE_HEADER: "node1", SESSION_HEADER: "s1"},
                                    metadata=metadata)  # fmt: skip
        asyncio.run(hub._take(FakeStream(), NoLease(), msg))
    steps = [step for step, _, _ in hub.recent]
    assert len(steps) == 3 and hub._dropped[0] < steps[0]
    asyncio.run(hub._trim_recent(FakeStream({STEP_HEADER: str(steps[1])})))
    assert [step for step, _, _ in hub.recent] == steps[2:]  # published up to the second: the third kept

    with caplog.at_level(logging.WARNING, "edge.stream"):
        asyncio.run(hub._lease(FakeStream({STEP_HEADER: "1"}), FreeLease()))  # published only up to step 1
    assert hub.leader and hub.counters["never_published"] == 1
    assert any("never published" in r.getMessage() for r in caplog.records)


def sent_in_two(messages: list, index: int, dim: int, more: bool) -> list:
    """A node's messages with its step ``index`` sent in two (the first half saying ``more`` when
    asked, as a new session's re-send does), the later ones renumbered."""
    out = messages[:index]
    msg = decode(messages[index], ("summaries",))
    now, items = decode_tracklets(msg, dim)
    seq, half = msg.header["seq"], len(items) // 2
    out += [encode_tracklets(seq, now, items[:half], more), encode_tracklets(seq + 1, now, items[half:])]
    for parts in messages[index + 1 :]:
        later = decode(parts, ("summaries", "bye"))
        if later.kind == "bye":
            out.append(encode("bye", {**later.header, "seq": later.header["seq"] + 1}))
        else:
            out.append(encode_tracklets(later.header["seq"] + 1, *decode_tracklets(later, dim)))
    return out


def paired_times(stream: list[tuple[str, list]]) -> tuple[list[dict], dict]:
    """Each step of both nodes a lockstep hub decides together: node -> the scene time of its
    message; and the final site ids."""
    hub = RegionSteps(HALL, settings(), lockstep=("node1", "node2"))
    pairs, turns = [], hub.lockstep.turns

    def spy(*args):
        for turn in turns(*args):
            if isinstance(turn, list) and len(turn) == 2:
                pairs.append({node: json.loads(held.parts[2])["now"] for node, held in turn})
            yield turn

    hub.lockstep.turns = spy  # type: ignore[method-assign]
    return pairs, finals(decide(stream, hub=hub).values())


def test_in_lockstep_a_step_sent_in_several_messages_takes_one_step_s_turn(node_log, one_node):
    """A new session's re-send goes in several messages (each below the servers' max_payload): all
    but the last say ``more`` and are decided on their own, so node2's later steps still pair with
    node1's of the same scene time. Without it, every later pair was one step apart."""
    messages = split(node_log)
    dim = int(decode(node_log[0], ("hello",)).header["embedding_dim"])
    index = next(
        i for i, m in enumerate(messages["node2"]) if i > 20 and len(decode(m, ("summaries",)).header["items"]) >= 2
    )
    for more in (True, False):
        node2 = sent_in_two(messages["node2"], index, dim, more)
        stream = [("node1", m) for m in messages["node1"]] + [("node2", m) for m in node2]
        pairs, final = paired_times(stream)
        apart = [p for p in pairs if p["node1"] != p["node2"]]
        if more:
            assert not apart and len(pairs) == len(messages["node1"]) - 2  # every step but the hello and bye
            assert set(final) == set(finals(one_node.values()))  # every tracklet made final
        else:
            assert len(apart) > 10, "the test no longer shows what a step in two messages did"
