"""The site's pieces in-process: the engine's candidate seam, the FAISS gallery, the SQLite store,
the wire format."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.embeddings import Embeddings
from core.ports import free_base, free_port
from edge.identity import EngineSettings, FloorTrack, IdentityEngine, TrackletSummary
from edge.site.gallery import Gallery, candidates_for, exact_neighbours
from edge.site.outbox import merge_steps
from edge.site.sessions import NodeState
from edge.site.steps import all_done, take_steps, waiting_for
from edge.site.store import SCHEMA, Store, TrackletRow
from edge.wire.site_protocol import (
    DimensionError,
    ProtocolError,
    WireTracklet,
    decode,
    decode_tracklets,
    encode,
    encode_tracklets,
)

BOX = np.array([10.0, 10.0, 50.0, 120.0])


def vec(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def summary(cam: str, lid: int, v: np.ndarray, t0: float, t1: float, ended: bool = False) -> TrackletSummary:
    return TrackletSummary(cam, lid, t0, t1, Embeddings(v[None]), 3, 3.0, BOX, BOX, None, ended)


def test_candidate_seam_limits_whom_a_tracklet_is_scored_against():
    settings = EngineSettings(threshold=0.8, scale=0.1)
    people = [np.eye(8, dtype=np.float32)[0], np.eye(8, dtype=np.float32)[1]]  # two clearly different people
    first = [summary("cam1", i + 1, p, 0.0, 1.0) for i, p in enumerate(people)]
    later = summary("cam2", 1, people[0], 5.0, 6.0)

    plain = IdentityEngine(settings)
    plain.update(first, 1.0)
    assert plain.update([later], 6.0)[0].kind == "assigned" and plain.global_id(("cam2", 1)) == plain.global_id(
        ("cam1", 1)
    )

    asked = []

    def only_second(waiting):  # a gallery that proposes the wrong identity only
        asked.append([s.key for s in waiting])
        return [{2} for _ in waiting]

    seam = IdentityEngine(settings, candidates=only_second)
    seam.update(first, 1.0)
    d = seam.update([later], 6.0)
    assert [(x.kind, x.global_id) for x in d if x.key == ("cam2", 1)] == [("new", 3)]  # identity 1 was never proposed
    assert [("cam2", 1)] in asked

    everyone = IdentityEngine(settings, candidates=lambda waiting: None)  # None: every identity, as without the seam
    everyone.update(first, 1.0)
    everyone.update([later], 6.0)
    assert everyone.assignment == plain.assignment


def test_restore_and_adopt_continue_a_persisted_identity():
    settings = EngineSettings(threshold=0.5, scale=0.1)
    e = IdentityEngine(settings)
    e.update([summary("cam1", 1, vec(1), 0.0, 1.0, ended=True)], 1.0)
    e.flush()
    ident = e.identities[1]
    fresh = IdentityEngine(settings)
    fresh.restore([ident], next_id=5)
    assert fresh.adopt(summary("cam1", 7, vec(9), 2.0, 3.0), 1).kind == "assigned"
    assert fresh.global_id(("cam1", 7)) == 1
    assert (
        fresh.update([summary("cam2", 1, vec(3), 4.0, 5.0)], 5.0)[0].global_id == 5
    )  # new ids continue after the persisted ones
    with pytest.raises(RuntimeError, match="fresh engine"):
        fresh.restore([], 1)


def test_gallery_replaces_removes_and_switches_to_ivf_with_high_recall():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(3000, 16)).astype(np.float32)
    g = Gallery(16, approximate_above=2000, nprobe=16)
    g.upsert(range(1, 1001), data[:1000])
    assert g.kind == "exact" and len(g) == 1000
    assert g.search(data[5], 1)[1][0, 0] == 6
    g.upsert([6], data[1500:1501])  # identity 6's appearance changed
    assert g.search(data[1500], 1)[1][0, 0] == 6 and len(g) == 1000
    g.remove([6])
    assert 6 not in g.search(data[1500], 5)[1][0]
    g.upsert(range(1001, 3001), data[1000:])
    assert g.kind == "ivf" and len(g) == 2999
    queries = data[:200] + 0.3 * rng.normal(size=(200, 16)).astype(np.float32)
    exact = exact_neighbours(g, queries, 1)[:, 0]
    approx = g.search(queries, 1)[1][:, 0]
    assert (exact == approx).mean() >= 0.9
    assert candidates_for(g, [None, data[10]], 3)[0] == set() and 11 in candidates_for(g, [None, data[10]], 3)[1]


def test_the_exact_gallery_rewrites_rows_in_place_and_searches_as_brute_force_after_any_changes():
    """400 steps of replacements and removals (ids repeated within a step, removed ones coming
    back): after each, the gallery holds exactly the live ids, its best match is brute force's,
    and a pickled copy searches the same."""
    import pickle

    rng = np.random.default_rng(1)
    g, truth = Gallery(8), {}
    for _ in range(400):
        ids = rng.integers(0, 60, size=rng.integers(0, 5))
        vectors = rng.normal(size=(len(ids), 8))
        gone = [int(x) for x in rng.integers(0, 60, size=rng.integers(0, 3)) if int(x) not in set(ids.tolist())]
        g.upsert(ids, vectors, gone)
        truth.update({int(i): v / np.linalg.norm(v) for i, v in zip(ids, vectors)})
        for x in gone:
            truth.pop(x, None)
        assert len(g) == len(truth) and g.kind == "exact"
        if truth:
            q = rng.normal(size=8)
            keys = list(truth)
            found = g.search(q, len(truth))[1][0]
            assert set(found) == set(keys) and found[0] == keys[int(np.argmax(np.stack(list(truth.values())) @ q))]
    copy = pickle.loads(pickle.dumps(g))
    q = rng.normal(size=(3, 8))
    assert (copy.search(q, 5)[1] == g.search(q, 5)[1]).all()


def test_store_round_trip_keeps_identities_and_what_the_site_was_told(tmp_path):
    e = IdentityEngine(EngineSettings(threshold=0.5, scale=0.1))
    floor = FloorTrack()
    floor.add(0.5, np.array([1.0, 2.0]))
    parts = Embeddings(vec(1)[None], np.stack([vec(2), vec(3)])[None], np.array([[0.9, 0.4]]))
    s = TrackletSummary("cam1", 1, 0.0, 1.0, parts, 3, 3.0, BOX, BOX, floor, True)
    e.update([s], 1.0)
    e.flush()
    e._refresh([])
    store = Store(tmp_path / "hub.sqlite")
    store.save(
        e.identities.values(),
        [],
        [TrackletRow("a", "s1", "cam1", 1, 1, 1, True)],
        {"next_gid": 2, "bases": {"cam1": 0}},
    )
    store.close()
    again = Store(tmp_path / "hub.sqlite")
    (ident,) = again.identities()
    assert ident.global_id == 1 and ident.cameras == {"cam1"} and ident.spans == {"cam1": [(0.0, 1.0)]}
    np.testing.assert_allclose(ident.past.parts, e.identities[1].past.parts, atol=1e-6)
    np.testing.assert_allclose(ident.past.part_conf, e.identities[1].past.part_conf, atol=1e-6)
    assert ident.past_floor.arrays()[1].tolist() == [[1.0, 2.0]]
    assert ident.last_box.tolist() == list(BOX)  # where it was last seen: transitions with doors need it
    assert again.tracklets() == [TrackletRow("a", "s1", "cam1", 1, 1, 1, True)]
    assert again.meta() == {"next_gid": 2, "bases": {"cam1": 0}}
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def wire(lid: int, app=None, floor=None, last=1.0) -> WireTracklet:
    return WireTracklet("cam1", lid, 0.0, last, 2, 2.0, BOX, BOX, False, 0.8, 12, app, floor)


def test_wire_round_trip_and_bad_messages():
    app = Embeddings(vec(1, 320)[None])
    frames = encode_tracklets(7, 3.5, [wire(1, app, np.array([[0.1, 1.0, 2.0]])), wire(2)])
    now, (a, b) = decode_tracklets(decode(frames, ("summaries",)), 320)
    assert now == 3.5 and a.local_id == 1 and a.conf == pytest.approx(0.8) and a.frame == 12
    np.testing.assert_allclose(a.appearance.global_, app.global_, atol=1e-6)
    assert a.floor.tolist() == [[0.1, 1.0, 2.0]] and b.appearance is None and b.floor is None
    with pytest.raises(DimensionError, match="embedding size 320, the hub's model gives 512"):
        decode_tracklets(decode(frames, ("summaries",)), 512)
    bad = list(frames)
    bad[-1] = bad[-1][:-4]
    with pytest.raises(ProtocolError, match="does not match its"):
        decode(bad, ("summaries",))
    nan = encode_tracklets(1, 0.0, [wire(1, Embeddings(np.full((1, 320), np.nan, np.float32)))])
    with pytest.raises(ProtocolError, match="NaN"):
        decode(nan, ("summaries",))
    with pytest.raises(ProtocolError, match="unknown message kind"):
        decode(frames, ("hello",))


def test_coalescing_keeps_the_newest_summary_and_every_floor_sample():
    older = [wire(1, Embeddings(vec(1)[None]), np.array([[0.1, 0.0, 0.0]]), last=1.0), wire(2, last=1.0)]
    newer = [wire(1, None, np.array([[0.2, 1.0, 1.0]]), last=2.0)]
    merged = {w.local_id: w for w in merge_steps(older, newer)}
    assert merged[1].last_seen == 2.0 and merged[1].appearance is not None
    assert merged[1].floor[:, 0].tolist() == [0.1, 0.2] and merged[2].last_seen == 1.0


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("conf", "x", "'conf' missing or of the wrong type"),
        ("frame", "x", "'frame' missing or of the wrong type"),
        ("frame", float("inf"), "'frame' missing or of the wrong type"),
        ("local_id", 10**30, "'local_id' is out of range"),
        ("first_seen", float("inf"), "'first_seen' is not finite"),
        ("weight", -1.0, "negative"),
    ],
)
def test_a_bad_item_field_is_a_protocol_error_never_a_crash(field, value, message):
    """The hub only catches ProtocolError per message: every bad value a node can send must be one."""
    import json

    frames = encode_tracklets(1, 1.0, [wire(1)])
    header = json.loads(frames[2])
    header["items"][0][field] = value
    frames[2] = json.dumps(header).replace("Infinity", "1e400").encode()  # JSON's 1e400 parses to infinity
    with pytest.raises(ProtocolError, match=message):
        decode_tracklets(decode(frames, ("summaries",)), 320)


def test_json_constants_and_deep_nesting_are_protocol_errors():
    frames = encode_tracklets(1, 1.0, [wire(1)])
    for header in (frames[2].replace(b'"now": 1.0', b'"now": NaN'), b"[" * 100000 + b"]" * 100000):
        with pytest.raises(ProtocolError, match="unreadable header"):
            decode([frames[0], frames[1], header, *frames[3:]], ("summaries",))


def test_a_node_sends_to_a_remote_hub_only_encrypted_unless_told_otherwise():
    from pydantic import ValidationError

    from edge.site.config import SiteConfig

    with pytest.raises(ValidationError, match="hub tcp://10.0.0.5:5600 is not on this machine: configure site.curve"):
        SiteConfig(node="n1", hub="tcp://10.0.0.5:5600")
    assert SiteConfig(node="n1", hub="tcp://10.0.0.5:5600", insecure=True).insecure
    assert SiteConfig(node="n1", hub="tcp://127.0.0.1:5600").curve is None


def test_a_resync_after_a_long_outage_goes_in_chunks_the_hub_accepts():
    """Thousands of unfinished tracklets when the hub comes back: the full state is split into
    messages that each stay within the protocol's limits, every one marked full."""
    from test_identity_engine import summary

    from edge.site.config import SiteConfig
    from edge.site.node import SiteEngine
    from edge.site.outbox import RESYNC_CHUNK

    node = SiteEngine(SiteConfig(node="n1", hub="tcp://127.0.0.1:9"), ["cam1"], "m", 4)
    try:
        for lid in range(2 * RESYNC_CHUNK + 500):
            s = summary("cam1", lid, [1.0, 0.0, 0.0, 0.0], 0.0, 1.0)
            node.records[s.key] = s
        with node._lock:  # as on a welcome
            node._resync()
        chunks = list(node.outbox)
    finally:
        node.close()
    assert [len(items) for _, items, _ in chunks] == [RESYNC_CHUNK, RESYNC_CHUNK, 500]
    assert all(full for _, _, full in chunks)
    for now, items, _ in chunks:
        _, decoded = decode_tracklets(decode(encode_tracklets(1, now, items), ("summaries",)), 4)
        assert len(decoded) == len(items)


def test_a_restarted_hub_keeps_sealed_identities_sealed_and_each_cameras_look(tmp_path):
    """A hub's store holds a sealed flicker identity (1), a person (2) and cam1's learnt look: the
    restarted hub keeps 1 sealed and out of its gallery, and continues cam1's mean from the store."""

    from edge.site.hub_config import HubConfig
    from edge.site.hub_service import Hub

    model = Path(__file__).resolve().parents[1] / "edge" / "demo_models" / "reid.onnx"
    dim = 320
    e = IdentityEngine(EngineSettings(threshold=0.5, scale=0.1))
    e.update(
        [summary("cam1", 1, vec(1, dim), 0.0, 0.1, ended=True), summary("cam1", 2, vec(2, dim), 0.0, 5.0, ended=True)],
        5.0,
    )
    e.flush()
    e._refresh([])
    e.identities[1].sealed = True
    look = {"cam1": {"sum": (3 * vec(3, dim)).tolist(), "parts": None, "n": 3}}
    store = Store(tmp_path / "hub.sqlite")
    store.save(e.identities.values(), [], [], {"next_gid": 3, "bases": {}, "sealed": [1], "centering": look})
    store.close()
    port = free_port()
    hub = Hub(
        HubConfig(
            bind=f"tcp://127.0.0.1:{port}",
            reid_model=str(model),
            store=str(tmp_path / "hub.sqlite"),
            publisher={"enabled": False},
        )
    )
    try:
        assert hub.engine.identities[1].sealed and not hub.engine.identities[2].sealed
        assert len(hub.gallery) == 1  # the person only
        assert hub.engine.centering_state()["cam1"]["n"] == 3
        hub.engine.update([summary("cam2", 1, vec(4, dim), 10.0, 12.0)], 12.0)  # centering is built now, from the store
        assert hub.engine.centering.state()["cam1"]["n"] == 3
    finally:
        hub.close()


def test_a_store_from_before_doors_gains_the_last_box_column(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "old.sqlite")
    db.executescript(SCHEMA.replace(", last_box TEXT", ""))
    db.execute(
        "INSERT INTO identities (gid, created, last_seen, last_camera, cameras, spans, past_weight) "
        "VALUES (7, 0, 1, 'cam1', '[\"cam1\"]', '{}', 0)"
    )
    db.commit()
    db.close()
    (ident,) = Store(tmp_path / "old.sqlite").identities()
    assert ident.global_id == 7 and ident.last_box is None


class _GapLock:
    """The node's lock; ``between`` runs once, right after the next release: the pipeline thread
    taking the lock at its first chance."""

    def __init__(self):
        self._lock = threading.Lock()
        self.between = None

    def __enter__(self):
        self._lock.acquire()

    def __exit__(self, *exc):
        self._lock.release()
        between, self.between = self.between, None
        if between is not None:
            between()


def _driven_node():
    """A node with its own engine for outages whose I/O thread is stopped: the test calls what that
    thread calls (hub messages, the hub going away), in a fixed order."""
    from edge.site.config import SiteConfig
    from edge.site.node import SiteEngine

    node = SiteEngine(
        SiteConfig(node="n1", hub="tcp://127.0.0.1:9"),
        ["cam1"],
        "m",
        8,
        local=lambda: IdentityEngine(EngineSettings(threshold=0.5, scale=0.1)),
    )
    node.close()
    node._lock = _GapLock()
    assert node.receive(encode("welcome", {"hub_session": "h1", "ids": []}), False)
    return node


def _hub_says(node, welcomed: bool, ids=(), final=()) -> bool:
    return node.receive(
        encode("ids", {"ids": [list(i) for i in ids], "final": [list(f) for f in final], "decisions": []}), welcomed
    )


def test_the_hub_s_welcome_ids_are_never_overwritten_by_a_local_decision_in_between():
    """The hub answers again while the pipeline thread updates: the welcome's ids, the end of the
    outage and the resync happen under one lock, so an update right after sees the hub deciding
    and the hub's site id stays (before: the update fell between them and put back its
    provisional id, which nothing would send again)."""
    node = _driven_node()
    node.update([summary("cam1", 1, vec(1), 0.0, 1.0)], 1.0)
    _hub_says(node, True, ids=[("cam1", 1, 7)])
    node.hub_away(time.monotonic() - 10)
    node.update([summary("cam1", 1, vec(1), 0.0, 2.0), summary("cam1", 2, vec(2), 1.0, 2.0)], 2.0)
    provisional = node.global_id(("cam1", 2))
    assert node.global_id(("cam1", 1)) == 7 and node.is_provisional(provisional)

    node._lock.between = lambda: node.update([summary("cam1", 2, vec(2), 1.0, 3.0)], 3.0)
    assert node.receive(encode("welcome", {"hub_session": "h1", "ids": [["cam1", 1, 7], ["cam1", 2, 8]]}), False)
    assert node._lock.between is None  # the update ran
    assert node.global_id(("cam1", 1)) == 7 and node.global_id(("cam1", 2)) == 8
    assert node.report()["reconciled"] == {str(provisional): [8]} and node.report()["hub_outages"][0]["to"] is not None
    resent = [(w.camera, w.local_id) for _, items, full in node.outbox if full for w in items]
    assert sorted(resent) == [("cam1", 1), ("cam1", 2)]


def test_the_hub_s_decisions_wait_while_the_pipeline_reads_the_node_s_identities():
    """The link's threads apply the hub's decisions; the pipeline reads the identities for its
    events and snapshots. A decision applied mid-read changed the dicts and sets being iterated
    (a RuntimeError that ended the run): it now waits for the read to end."""
    node = _driven_node()
    node.update([summary("cam1", 1, vec(1), 0.0, 1.0)], 1.0)
    _hub_says(node, True, ids=[("cam1", 1, 7)])
    with node.reading():
        before = {gid: sorted(i.members) for gid, i in node.identities.items()}
        hub = threading.Thread(target=_hub_says, args=(node, True), kwargs={"ids": [("cam1", 1, 9)]})
        hub.start()
        hub.join(0.3)
        assert hub.is_alive() and {gid: sorted(i.members) for gid, i in node.identities.items()} == before
    hub.join(5)
    assert not hub.is_alive() and node.global_id(("cam1", 1)) == 9


def test_ids_and_finals_from_a_stalled_hub_are_ignored_until_it_welcomes_the_node_again():
    """The hub stalls past hub_timeout_s, the node decides alone, then the hub's late messages
    arrive (a new id, a different final) before its welcome: they are ignored and counted, so the
    node's own ids stand and every tracklet is final exactly once. After the welcome the hub's
    answers map the provisional ids onto site ids without finalising anything a second time."""
    node = _driven_node()
    node.update([summary("cam1", 1, vec(1), 0.0, 1.0), summary("cam1", 2, vec(2), 0.0, 1.0)], 1.0)
    _hub_says(node, True, ids=[("cam1", 1, 7), ("cam1", 2, 8)])
    node.hub_away(time.monotonic() - 10)
    node.update(
        [
            summary("cam1", 1, vec(1), 0.0, 2.0, ended=True),
            summary("cam1", 2, vec(2), 0.0, 2.0),
            summary("cam1", 3, vec(3), 1.0, 2.0),
        ],
        2.0,
    )
    provisional = node.global_id(("cam1", 3))
    assert node.is_provisional(provisional)

    assert not _hub_says(node, False, ids=[("cam1", 3, 9)], final=[("cam1", 2, 5)])  # late: the stalled hub catching up
    assert node.global_id(("cam1", 2)) == 8 and node.global_id(("cam1", 3)) == provisional
    assert ("cam1", 2) not in dict(node.take_final()) and node.stats["late_ignored"] == 2
    node.update(
        [summary("cam1", 2, vec(2), 0.0, 3.0, ended=True), summary("cam1", 3, vec(3), 1.0, 3.0, ended=True)], 100.0
    )
    finals = node.take_final()
    assert sorted(finals) == [(("cam1", 1), 7), (("cam1", 2), 8), (("cam1", 3), provisional)]  # each once, decided here

    assert node.receive(encode("welcome", {"hub_session": "h1", "ids": []}), False)
    resent = sorted((w.camera, w.local_id) for _, items, full in node.outbox if full for w in items)
    assert resent == [("cam1", 1), ("cam1", 2), ("cam1", 3)]  # all of them, for the hub's site ids
    _hub_says(node, True, final=[("cam1", 1, 7), ("cam1", 2, 8), ("cam1", 3, 9)])
    assert node.take_final() == []  # final here already: no second final
    assert node.report()["reconciled"] == {str(provisional): [9]} and node.report()["unreconciled"] == 0


def test_a_lockstep_hub_knows_whom_its_held_steps_wait_for():
    """edge.hub in lockstep: node1's steps wait for node2 (not connected, then connected and silent);
    once node2 sends one, both go to the engine and nobody is waited for; a node that said bye is
    not waited for."""
    nodes = {"node1": NodeState("node1", "s", b"1")}
    lockstep = ["node1", "node2"]
    assert waiting_for(nodes, lockstep) == [] and waiting_for(nodes, []) == []  # nothing held
    nodes["node1"].pending.extend([(1.0, [], False), (1.1, [], False)])
    assert waiting_for(nodes, lockstep) == ["node2"]  # not connected yet
    absent = {"node2"}  # said absent (waited for absent_after_s): node1 goes on alone until it connects
    assert waiting_for(nodes, lockstep, absent) == [] and not all_done(nodes, lockstep, absent)
    assert len(take_steps(nodes, lockstep, False, absent)) == 2
    nodes["node1"].pending.extend([(1.0, [], False), (1.1, [], False)])
    nodes["node2"] = NodeState("node2", "s", b"2")
    assert waiting_for(nodes, lockstep) == ["node2"] and take_steps(nodes, lockstep, False) == []
    nodes["node2"].pending.append((1.0, [], False))
    assert len(take_steps(nodes, lockstep, False)) == 1 and waiting_for(nodes, lockstep) == ["node2"]
    assert waiting_for(nodes, lockstep, absent) == ["node2"]  # connected now: waited for again
    nodes["node2"].finished = True  # said bye: node1 goes on alone
    assert waiting_for(nodes, lockstep) == [] and len(take_steps(nodes, lockstep, False)) == 1
    nodes["node1"].finished = True
    assert all_done(nodes, lockstep) and all_done({"node1": nodes["node1"]}, lockstep, absent)


def test_free_ports_come_from_outside_the_ephemeral_range_and_never_twice():
    """CI lost a hub to "Address already in use": a bind(0) probe's port is one any outgoing
    connection may take before the server binds it. Ports now come from outside that range."""
    from core.ports import _ephemeral_range, _outside_ephemeral

    if not _outside_ephemeral():
        pytest.skip("this machine's ephemeral port range leaves too few ports outside it")
    low, high = _ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(10000 <= p < low or high < p for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))  # nothing holds it
    base = free_base([0, 1, 100])  # a cluster's: none of them given before, all bindable now
    block = [base, base + 1, base + 100]
    assert not set(block) & set(ports) and all(10000 <= p < low or high < p for p in block)
    for port in block:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    assert free_base([0, 1, 100]) not in block
