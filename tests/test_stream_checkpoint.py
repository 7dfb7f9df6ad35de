"""A region hub's checkpoint: a hub that continues from one decides what the hub that wrote it
would have (in this process, at several positions, with and without the FAISS gallery; and with
real processes: the active hub SIGKILLed after a checkpoint, a new hub started cold under another
hash seed replays only what came after it); a checkpoint of other settings or naming code is not used."""

import asyncio
import json
import pickle
import signal
import time

import pytest
from test_edge_run import DEMO
from test_stream import hub_process, lease_holder, published, reference, settings, wait_for

from core.model_card import read_onnx_metadata
from core.ports import free_port
from edge.site.gallery import faiss, faiss_build
from edge.stream.checkpoint import CHECKPOINT_BUCKET, dump, load
from edge.stream.names import Region
from edge.stream.publisher import SummaryPublisher
from edge.stream.region_steps import GallerySettings, RegionSteps
from edge.stream.server import NatsServer

HALL = Region("hall")


def make_hub(name, search):
    if not search:
        return RegionSteps(HALL, settings())
    meta = read_onnx_metadata(str(DEMO / "reid.onnx"))
    few = GallerySettings(exact_below=1, k=3)  # FAISS decides which identities are scored
    return RegionSteps(HALL, settings(), embedding_dim=int(meta.embedding_dim), gallery=few)


def decide(hub, messages, first):
    out = {}
    for position, parts in enumerate(messages, start=first):
        body = hub.decide(position, parts, "node1", "s1")
        if body is not None:
            out[position] = json.loads(body)
    return out


@pytest.mark.parametrize("search", [False, True], ids=["every-identity", "faiss-k3"])
def test_a_hub_continuing_from_a_checkpoint_decides_what_the_writer_would_have(node_log, search):
    whole = decide(make_hub("whole", search), node_log, 1)
    assert len(whole) > 20
    for cut in (len(node_log) // 4, len(node_log) // 2, 3 * len(node_log) // 4):
        writer = make_hub("writer", search)
        before = decide(writer, node_log[:cut], 1)
        blob = dump(HALL, writer.state(), writer.fingerprint)
        reader = make_hub("reader", search)
        state = load(blob, HALL, reader.fingerprint)
        assert state is not None and state.position == cut
        reader.load(state)
        after = decide(reader, node_log[cut:], cut + 1)
        assert {**before, **after} == whole, f"decisions differ after a checkpoint at {cut}"
        assert (reader.gallery is not None) == search


def test_hubs_searching_with_another_faiss_build_do_not_share_a_fingerprint(monkeypatch):
    """A region's hubs must decide alike: another FAISS version or SIMD level may rank near-ties
    otherwise, so it is in the fingerprint a standby and a checkpoint are checked against (and does
    not matter to hubs that score every identity)."""
    import edge.stream.region_steps as region_steps

    searching, scoring = make_hub("a", True).fingerprint, make_hub("a", False).fingerprint
    assert make_hub("b", True).fingerprint == searching
    monkeypatch.setattr(region_steps, "faiss_build", lambda: "faiss 1.8.0 AVX2")
    assert make_hub("c", True).fingerprint != searching
    assert make_hub("c", False).fingerprint == scoring
    assert faiss_build().startswith(f"faiss {faiss.__version__} ")  # and the level this CPU dispatches to


def test_hubs_scoring_with_another_blas_kernel_do_not_share_a_fingerprint(monkeypatch):
    """Every hub scores with numpy, whose BLAS picks its kernel for the CPU: a standby on another CPU
    model may break a near-tie otherwise, so that kernel is in the fingerprint too."""
    import numpy as np
    from threadpoolctl import threadpool_info

    import edge.stream.region_steps as region_steps
    from edge.stream.checkpoint import numpy_build

    searching, scoring = make_hub("a", True).fingerprint, make_hub("a", False).fingerprint
    monkeypatch.setattr(region_steps, "numpy_build", lambda: f"numpy {np.__version__} openblas 0.3.27 SkylakeX")
    assert make_hub("b", True).fingerprint != searching and make_hub("b", False).fingerprint != scoring
    build = numpy_build()
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    assert build.startswith(f"numpy {np.__version__} ") and all(str(i["architecture"]) in build for i in blas), build


def test_a_checkpoint_of_other_settings_or_naming_code_is_not_used(node_log, caplog):
    hub = make_hub("writer", False)
    decide(hub, node_log[:50], 1)
    blob = dump(HALL, hub.state(), hub.fingerprint)
    assert load(blob, HALL, "another-fingerprint") is None
    assert "written with other matching, gallery or lockstep settings" in caplog.text
    assert load(blob, Region("yard"), hub.fingerprint) is None

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    head, _, _ = blob.partition(b"\n")
    assert load(head + b"\n" + pickle.dumps(Evil()), HALL, hub.fingerprint) is None
    assert "builtins.print is not state" in caplog.text
    # a function reached through a module this project imports it into, by a dotted name or not
    for name in (b"pickle.loads", b"pickle", b"dump"):
        crafted = b"\x80\x04c" + b"edge.stream.checkpoint\n" + name + b"\n."
        assert load(head + b"\n" + crafted, HALL, hub.fingerprint) is None
        assert f"edge.stream.checkpoint.{name.decode()} is not state" in caplog.text
    assert load(b"garbage", HALL, hub.fingerprint) is None
    assert load(blob, HALL, hub.fingerprint, stream_made="2026-12-02 another stream") is None
    assert "not of the one made" in caplog.text


def checkpoint_position(url):
    """The position in the region's stored checkpoint (0: none, or a read that overlapped a write
    and did not finish within 5 s: the caller asks again)."""

    async def read():
        import nats

        nc = await nats.connect(url)
        try:
            store = await nc.jetstream().object_store(CHECKPOINT_BUCKET)
            found = await asyncio.wait_for(store.get("hall"), 5.0)
            return json.loads(found.data.partition(b"\n")[0])["position"]
        except Exception:  # noqa: BLE001 - none yet
            return 0
        finally:
            await nc.close()

    return asyncio.run(read())


def test_a_hub_started_after_the_active_one_was_killed_continues_from_its_checkpoint(tmp_path, node_log):
    """hub-a decides the first half and checkpoints; SIGKILL; the rest is published with no hub;
    hub-b starts cold (another hash seed): it loads the checkpoint, reads only what follows it, and
    the decision stream holds every step exactly once, as the reference."""
    expected = reference(node_log)
    half = len(node_log) // 2
    report = tmp_path / "hub-b.json"
    with NatsServer(free_port(), tmp_path / "store") as server:
        a = hub_process(tmp_path, server.url, "hub-a", "--checkpoint-every", "0.2")
        wait_for(lambda: lease_holder(server.url) == "hub-a", 30, "hub-a active")
        publisher = SummaryPublisher([server.url], HALL, "node1", "s1")
        b = None
        try:
            for parts in node_log[:half]:
                publisher.send(parts)
            assert publisher.flush(10)
            wait_for(lambda: checkpoint_position(server.url) == half, 30, "hub-a's checkpoint at the half")
            a.send_signal(signal.SIGKILL)
            a.wait(10)
            for parts in node_log[half:]:
                publisher.send(parts)
            assert publisher.flush(10)
            b = hub_process(tmp_path, server.url, "hub-bb", "--report", str(report))
            last = max(expected)
            wait_for(lambda: (published(server.url, HALL) or [(0,)])[-1][0] == last, 60, "every step decided")
            time.sleep(0.5)
            got = published(server.url, HALL)
        finally:
            publisher.close(0)
            a.kill()
            if b is not None:
                b.send_signal(signal.SIGTERM)
                out, _ = b.communicate(timeout=20)
    steps = [s for s, _ in got]
    assert steps == sorted(set(steps)) == sorted(expected), "a step lost or published twice"
    assert all(body == expected[s] for s, body in got)
    assert f"continues region hall from its checkpoint at position {half}" in out
    stats = json.loads(report.read_text())
    assert stats["position"] == len(node_log)
    assert stats["steps"] <= len(node_log) - half  # it read what came after the checkpoint, not the stream's start
    assert stats["checkpointed"] == len(node_log)  # its clean stop wrote the end


def test_a_checkpoint_keeps_transitions_and_identities_handed_over():
    """A yard hub that welcomed hall's person, checkpointed before the person arrives, decides as
    the one that never stopped: the person keeps hall's id."""
    from test_stream_handover import HANDOVER_HEADER, node_messages, run_hall, yard_steps
    from test_stream_handover import settings as handover_settings

    _, handed, ids = run_hall()
    messages = [(o.parts, {HANDOVER_HEADER: "hall"}) for o in handed]
    messages += [(p, {"Clipreid-Node": "yardnode", "Clipreid-Session": "s1"}) for p in node_messages(
        "yardnode", ["cam3"], yard_steps(8.0))]  # fmt: skip

    def yard():
        return RegionSteps(Region("yard"), handover_settings(), id_base=2_000_000)

    first = yard()
    for position, (parts, headers) in enumerate(messages[:2], start=1):
        first.take(position, parts, headers)
    second = yard()
    state = load(dump(Region("yard"), first.state(), first.fingerprint), Region("yard"), second.fingerprint)
    assert state is not None and state.engine.cfg.transitions
    second.load(state)
    for position, (parts, headers) in enumerate(messages[2:], start=3):
        second.take(position, parts, headers)
    assert second.engine.global_id(("cam3", 1)) == ids[("cam1", 1)]
