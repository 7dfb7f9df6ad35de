"""The view's state: identities, sightings, merges, reassignments, cameras, bounds, bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from edge.runtime.preview import PreviewClock, crop_jpeg, preview_jpeg
from edge.view.config import Limits
from edge.view.state import ViewState
from edge.wire.events import SCHEMA, SCHEMA_VERSION
from edge.wire.recording import RecordingWriter, read_recording


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def msg(
    topic: str, seq: int, jpeg: bytes | None = None, schema: str = SCHEMA, version: int = SCHEMA_VERSION, **fields
) -> list[bytes]:
    header = {"schema": schema, "version": version, "seq": seq, "publish_ts": 1000.0 + seq, **fields}
    if jpeg is not None:
        header["jpeg_bytes"] = len(jpeg)
    return [topic.encode(), json.dumps(header).encode()] + ([jpeg] if jpeg is not None else [])


def sighting(
    kind: str, gid: int, camera: str, local_id: int, ts: float, seq: int, jpeg: bytes | None = None, **extra
) -> list[bytes]:
    return msg(
        f"identity/{gid}",
        seq,
        jpeg,
        event=kind,
        global_id=gid,
        cameras=[camera],
        last_seen=ts,
        camera=camera,
        local_id=local_id,
        bbox=[0, 0, 10, 20],
        score=0.9,
        capture_ts=ts,
        frame=int(ts),
        **extra,
    )


JPEG = crop_jpeg(np.full((100, 50, 3), 128, np.uint8), [0, 0, 50, 100], 64, 10000)


def test_journey_across_cameras_in_time_order_with_crops_and_floor_track():
    state = ViewState(clock=Clock())
    assert state.ingest(sighting("new", 5, "cam1", 7, 10.0, 1, JPEG))
    assert state.ingest(
        msg(
            "track/cam1",
            2,
            event="update",
            camera="cam1",
            local_id=7,
            global_id=5,
            bbox=[0, 0, 1, 1],
            capture_ts=14.0,
            floor=[1.0, 2.0],
        )
    )
    assert state.ingest(
        msg(
            "track/cam1",
            3,
            event="ended",
            camera="cam1",
            local_id=7,
            global_id=5,
            bbox=[0, 0, 1, 1],
            capture_ts=15.0,
            floor=[1.5, 2.5],
        )
    )
    assert state.ingest(sighting("assigned", 5, "cam3", 2, 30.0, 4, JPEG))
    j = state.journey(5)
    assert [(s["camera"], s["local_id"]) for s in j["sightings"]] == [("cam1", 7), ("cam3", 2)]
    first = j["sightings"][0]
    assert (first["first_ts"], first["last_ts"], first["ended"]) == (10.0, 15.0, True)
    assert first["floor"] == [[1.0, 2.0], [1.5, 2.5]]
    assert first["crop"] is not None and state.crop(first["crop"]) == JPEG
    card = j["card"]
    assert card["cameras"] == ["cam1", "cam3"] and card["first_seen"] == 10.0 and card["last_seen"] == 30.0
    assert card["crop"] == j["sightings"][1]["crop"]  # the newest crop stands for the person
    assert card["active_until"] > state.clock()  # cam3/2 is open and was just seen


def test_merge_marks_the_absorbed_card_and_moves_its_sightings():
    state = ViewState(clock=Clock())
    state.ingest(sighting("new", 3, "cam1", 1, 10.0, 1, JPEG))
    state.ingest(sighting("new", 9, "cam2", 4, 11.0, 2, JPEG))
    before = state.version
    state.ingest(
        msg(
            "identity/3",
            3,
            event="merged",
            global_id=3,
            cameras=["cam1", "cam2"],
            last_seen=11.0,
            **{"from": 9, "into": 3},
        )
    )
    changed = {c["global_id"]: c for c in state.delta(before)["identities"]}
    assert set(changed) == {3, 9}  # both cards are pushed to the page
    assert changed[9]["merged_into"] == 3 and changed[9]["active_until"] == 0.0
    assert changed[3]["merged_from"] == [9] and changed[3]["cameras"] == ["cam1", "cam2"]
    assert [(s["camera"], s["local_id"]) for s in state.journey(3)["sightings"]] == [("cam1", 1), ("cam2", 4)]
    # later track events of the moved tracklet land on the surviving identity
    state.ingest(
        msg("track/cam2", 4, event="update", camera="cam2", local_id=4, global_id=3, bbox=[0, 0, 1, 1], capture_ts=20.0)
    )
    assert state.journey(3)["card"]["last_seen"] == 20.0


def test_a_sealed_identity_is_marked_on_its_card():
    """A flicker's identity (``new`` with ``sealed``) is marked so the page can dim it; others are not."""
    state = ViewState(clock=Clock())
    state.ingest(sighting("new", 3, "cam1", 1, 10.0, 1, JPEG))
    state.ingest(sighting("new", 4, "cam3", 9, 10.5, 2, sealed=True))
    assert state.journey(4)["card"]["sealed"] is True and state.journey(3)["card"]["sealed"] is False


def test_reassignment_moves_one_sighting_and_notes_it_on_both_cards():
    state = ViewState(clock=Clock())
    state.ingest(sighting("new", 5, "cam1", 1, 10.0, 1))
    state.ingest(sighting("assigned", 5, "cam3", 4, 12.0, 2))
    state.ingest(sighting("reassigned", 12, "cam3", 4, 13.0, 3, **{"from": 5, "into": 12}))
    assert [(s["camera"], s["local_id"]) for s in state.journey(5)["sightings"]] == [("cam1", 1)]
    assert [(s["camera"], s["local_id"]) for s in state.journey(12)["sightings"]] == [("cam3", 4)]
    assert state.journey(5)["card"]["notes"] == ["cam3/4 moved to #12"]
    assert state.journey(12)["card"]["notes"] == ["cam3/4 came from #5"]
    assert state.journey(5)["card"]["cameras"] == ["cam1"]


def test_live_until_the_tracklets_end_or_go_quiet_then_expired():
    clock = Clock()
    state = ViewState(Limits(live_s=5.0), clock=clock)
    state.ingest(sighting("new", 1, "cam1", 1, 10.0, 1))
    assert state.journey(1)["card"]["active_until"] == clock.t + 5.0
    state.ingest(
        msg("track/cam1", 2, event="ended", camera="cam1", local_id=1, global_id=1, bbox=[0, 0, 1, 1], capture_ts=11.0)
    )
    assert state.journey(1)["card"]["active_until"] == 0.0
    state.ingest(msg("identity/1", 3, event="expired", global_id=1, cameras=["cam1"]))
    assert state.journey(1)["card"]["expired"] is True


def test_bounded_identities_sightings_crops_and_a_full_refresh_after_forgetting():
    state = ViewState(Limits(max_identities=10, sightings_per_identity=3, max_crops=5, floor_points=4), clock=Clock())
    seq = 0
    for gid in range(1, 31):
        for cam in range(6):
            seq += 1
            state.ingest(
                sighting("new" if cam == 0 else "assigned", gid, f"cam{cam}", gid, float(gid * 10 + cam), seq, JPEG)
            )
    for i in range(10):
        seq += 1
        state.ingest(
            msg(
                "track/cam5",
                seq,
                event="update",
                camera="cam5",
                local_id=30,
                global_id=30,
                bbox=[0, 0, 1, 1],
                capture_ts=400.0 + i,
                floor=[float(i), 0.0],
            )
        )
    assert sorted(state.identity_book.identities) == list(range(21, 31))  # the longest-untouched forgotten first
    assert all(len(i.sightings) == 3 for i in state.identity_book.identities.values())
    assert [s["camera"] for s in state.journey(30)["sightings"]] == ["cam3", "cam4", "cam5"]  # the newest kept
    assert len(state.journey(30)["sightings"][-1]["floor"]) == 4
    assert len(state.crops) == 5
    assert len(state.identity_book.where) <= 10 * 3  # no index entries left behind by forgotten sightings
    delta = state.delta(1)  # the page drops forgotten cards by id, no full refresh needed
    assert delta["full"] is False and sorted(delta["removed"]) == list(range(1, 21))
    assert state.delta(state.version)["removed"] == []
    state.identity_book.removed_horizon = 5  # what the deque no longer covers gets the full state
    assert state.delta(1)["full"] is True and state.delta(5)["full"] is False


def test_malformed_messages_are_dropped_and_counted(caplog):
    state = ViewState(clock=Clock())
    with caplog.at_level(logging.WARNING):
        assert not state.ingest([b"identity/1"])  # no header
        assert not state.ingest([b"identity/1", b"{not json"])
        assert not state.ingest([b"\xff\xfe", b"{}"])
        assert not state.ingest(msg("identity/1", 1, event="new"))  # no global_id
        assert not state.ingest(msg("frame/cam1", 2, event="frame", camera="cam1"))  # a frame without its JPEG
    assert state.counters["malformed"] == 5 and state.counters["received"] == 5
    assert sum("malformed message dropped" in r.message for r in caplog.records) == 1  # logged once, then counted
    assert state.ingest(sighting("new", 1, "cam1", 1, 1.0, 3))  # and the next good one goes through


def test_another_schema_version_sets_a_banner_logs_once_and_is_dropped(caplog):
    state = ViewState(clock=Clock())
    with caplog.at_level(logging.ERROR):
        for seq in range(1, 4):
            assert not state.ingest(
                sighting("new", seq, "cam1", seq, 1.0, seq)[:1] + msg("identity/1", seq, version=99, event="new")[1:]
            )
    assert state.counters["foreign"] == 3 and not state.identity_book.identities
    assert "version 99" in state.full()["status"]["schema_problem"]
    assert len([r for r in caplog.records if "version 99" in r.message]) == 1


def test_sequence_gaps_and_publisher_restarts_are_counted():
    state = ViewState(clock=Clock())
    for seq in (1, 2, 5, 6, 10, 1, 2):
        state.ingest(msg("stats", seq, event="stats", fps={"cam1": 9.5}, down={}))
    assert state.counters["seq_gaps"] == 2 + 3
    assert state.counters["publisher_restarts"] == 1


def test_cameras_previews_fps_and_down_since():
    clock = Clock(100.0)
    state = ViewState(Limits(stale_s=5.0), clock=clock)
    jpeg, _ = preview_jpeg(np.zeros((360, 640, 3), np.uint8), 320, 70)
    for i in range(5):
        clock.t = 100.0 + 0.5 * i
        state.ingest(
            msg(
                "frame/cam1",
                i + 1,
                jpeg,
                event="frame",
                camera="cam1",
                frame=i,
                capture_ts=clock.t,
                width=320,
                height=180,
                boxes=[[1, 2, 30, 60, 7, 5]],
            )
        )
    cam = state.full()["cameras"][0]
    assert cam["frame_seq"] == 5 and cam["preview_fps"] == 2.0 and cam["down_since"] is None
    assert cam["frame"]["boxes"] == [[1, 2, 30, 60, 7, 5]] and state.frame("cam1") == jpeg
    clock.t = 110.0  # previews stopped 8 s ago
    assert state.full()["cameras"][0]["down_since"] == 102.0
    state.ingest(
        msg(
            "stats",
            6,
            event="stats",
            fps={"cam2": 10.0},
            down={"cam2": 4.0},
            latency_ms={"detect": {"p50": 1, "p99": 2}},
        )
    )
    cams = {c["id"]: c for c in state.full()["cameras"]}
    assert cams["cam2"]["down_since"] == 106.0 and cams["cam2"]["fps"] == 10.0
    assert state.full()["status"]["stats"]["latency_ms"]["detect"]["p99"] == 2


def test_a_camera_behind_its_rate_and_the_governors_cadence_reach_its_tile():
    state = ViewState(clock=Clock())
    state.ingest(
        msg(
            "stats",
            1,
            event="stats",
            fps={"cam1": 3.4, "cam2": 10.0},
            down={},
            below_rate={"cam1": {"fps": 3.4, "rate": 10.0, "share": 0.34}},
            detect_every={"cam1": 3, "cam2": 1},
        )
    )
    cams = {c["id"]: c for c in state.full()["cameras"]}
    assert cams["cam1"]["behind"] == {"fps": 3.4, "rate": 10.0, "share": 0.34} and cams["cam1"]["detect_every"] == 3
    assert cams["cam2"]["behind"] is None and cams["cam2"]["detect_every"] == 1
    state.ingest(
        msg(
            "stats",
            2,
            event="stats",
            fps={"cam1": 10.0, "cam2": 10.0},
            down={},
            below_rate={},
            detect_every={"cam1": 2, "cam2": 1},
        )
    )
    assert {c["id"]: c["behind"] for c in state.full()["cameras"]} == {"cam1": None, "cam2": None}  # back at its rate


def test_snapshot_teaches_a_late_joiner_the_identities_it_missed():
    state = ViewState(clock=Clock())
    state.ingest(
        msg(
            "snapshot",
            1,
            event="snapshot",
            identities=[
                {"global_id": 4, "cameras": ["cam1", "cam2"], "last_seen": 50.0, "live": [["cam2", 3]]},
                {"global_id": 10**9, "cameras": ["cam3"], "last_seen": 50.0, "live": [], "provisional": True},
            ],
        )
    )
    card = state.journey(4)["card"]
    assert card["cameras"] == ["cam1", "cam2"] and card["last_seen"] == 50.0 and card["active_until"] > 0
    assert not card["provisional"] and state.journey(10**9)["card"]["provisional"]  # a node's own id, hub away


def test_recording_round_trip_keeps_raw_parts_and_skips_a_torn_last_line(tmp_path, caplog):
    path = tmp_path / "rec.jsonl.gz"
    writer = RecordingWriter(path)
    messages = [sighting("new", 1, "cam1", 1, 1.0, 1, JPEG), [b"\x00\xff", b"not json"]]
    for i, parts in enumerate(messages):
        writer.write(parts, 100.0 + i)
    writer.close()
    assert list(read_recording(path)) == [(100.0, messages[0]), (101.0, messages[1])]
    plain = tmp_path / "rec.jsonl"
    plain.write_text('{"t": 1.0, "parts": ["YQ=="]}\n{"t": 2.0, "par')
    with caplog.at_level(logging.WARNING):
        assert list(read_recording(plain)) == [(1.0, [b"a"])]
    assert "rec.jsonl:2: not a recorded message" in caplog.text
    with pytest.raises(FileNotFoundError, match="recording not found"):
        list(read_recording(tmp_path / "missing.jsonl"))


def test_crops_are_bounded_in_bytes_and_previews_rate_limited():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (400, 200, 3), np.uint8)  # incompressible
    small = crop_jpeg(noise, [0, 0, 200, 400], 128, 8000)
    assert small is not None and len(small) <= 8000
    assert crop_jpeg(noise, [0, 0, 200, 400], 400, 1000) is None  # cannot fit: left out
    assert crop_jpeg(noise, [50, 50, 50.5, 300], 128, 8000) is None  # empty box
    jpeg, scale = preview_jpeg(noise, 100, 70)
    assert scale == 0.5 and jpeg[:2] == b"\xff\xd8"
    clock = PreviewClock(2.0)
    assert [clock.due("cam1", t) for t in (0.0, 0.2, 0.49, 0.5, 0.7, 1.0)] == [True, False, False, True, False, True]
    assert not PreviewClock(0.0).due("cam1", 0.0)


def test_a_tracklet_seen_before_its_identity_keeps_its_span_floor_and_end_and_a_moved_crop_shows_on_its_new_card():
    state = ViewState(clock=Clock())
    state.ingest(
        msg(
            "track/cam2",
            1,
            event="new",
            camera="cam2",
            local_id=5,
            global_id=None,
            bbox=[0, 0, 1, 1],
            capture_ts=11.0,
            floor=[1.0, 1.0],
        )
    )
    state.ingest(
        msg(
            "track/cam2",
            1,
            event="ended",
            camera="cam2",
            local_id=5,
            global_id=None,
            bbox=[0, 0, 1, 1],
            capture_ts=13.5,
            floor=[2.0, 1.0],
        )
    )
    assert not state.identity_book.identities  # nothing to show before the identity event
    state.ingest(sighting("new", 6, "cam2", 5, 13.0, 2))  # the engine decided after the tracklet ended
    s = state.journey(6)["sightings"][0]
    assert (
        s["ended"] is True and (s["first_ts"], s["last_ts"]) == (11.0, 13.5) and s["floor"] == [[1.0, 1.0], [2.0, 1.0]]
    )
    assert state.journey(6)["card"]["active_until"] == 0.0
    state.ingest(sighting("new", 7, "cam1", 1, 20.0, 3, JPEG))
    state.ingest(
        sighting("reassigned", 30, "cam1", 1, 21.0, 4, **{"from": 7, "into": 30})
    )  # into a new identity, no crop sent
    assert state.journey(30)["card"]["crop"] == state.journey(7)["card"]["crop"] is not None


def test_a_gz_recording_cut_short_replays_what_it_holds(tmp_path, caplog):
    """A recorder killed mid-run leaves a .gz without its end: replay keeps every whole message
    before the cut and says where it ended instead of raising."""
    path = tmp_path / "run.jsonl.gz"
    writer = RecordingWriter(path)
    for i in range(50):
        writer.write([b"identity/1", json.dumps({"seq": i}).encode()], float(i))
    writer.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with caplog.at_level(logging.WARNING):
        got = list(read_recording(path))
    assert 0 < len(got) < 50 and [json.loads(p[1])["seq"] for _, p in got] == list(range(len(got)))
    assert "ends early" in caplog.text


def test_listen_prints_a_malformed_line_for_a_header_that_is_not_an_object():
    from edge.listen import readable

    assert readable([b"identity/1", b"[1]"], False).startswith("malformed message")
    assert readable([b"identity/1", b"not json"], True).startswith("malformed message")
