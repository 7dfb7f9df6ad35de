"""The event schema (edge/wire/events.py): every kind's header is the JSON subscribers already
hold, byte for byte, from the runtime's tracklets and from the hub's; one decoder reads them back."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pytest
import zmq

from edge.identity.engine import Identity
from edge.identity.geometry import FloorTrack
from edge.identity.records import Decision
from edge.runtime.tracklets import Tracklet
from edge.wire.events import (
    IDENTITY_KINDS,
    SCHEMA,
    SCHEMA_VERSION,
    TRACK_KINDS,
    MalformedEvent,
    decision_event,
    decode,
    track_event,
)
from edge.wire.publisher import EventPublisher


def tracklet(floor: bool = True, gid: int | None = 5) -> Tracklet:
    box = np.array([412.34, 120.85, 451.0, 231.449], np.float32)
    t = Tracklet("cam1", 7, 100.25, 101.5, 10, 22, box, 0.87654)
    t.global_id = gid
    if floor:
        t.floor = FloorTrack()
        t.floor.add(100.0, np.array([1.234, 5.678]))
        t.floor.add(101.0, np.array([2.345, 6.789]))
    return t


@dataclass
class HubShaped:
    """The attributes the site hub's ``HubTracklet`` offers an identity event."""

    camera_id: str = "cam2"
    xyxy: tuple = (88.11, 140.0, 120.66, 230.24)
    conf: float = 0.7912
    last_seen: float = 200.5
    last_frame: int = 164


TRACK = (
    '{{"event": "{}", "camera": "cam1", "local_id": 7, "global_id": 5, "bbox": [412.3, 120.8, 451.0, 231.4], '
    '"score": 0.877, "capture_ts": 101.5, "frame": 22, "floor": [2.35, 6.79]}}'
)
BOX_T = '"bbox": [412.3, 120.8, 451.0, 231.4], "score": 0.877, "capture_ts": 101.5, "frame": 22}'
BOX_HUB = '"bbox": [88.1, 140.0, 120.7, 230.2], "score": 0.791, "capture_ts": 200.5, "frame": 164}'


def test_track_events_are_the_json_subscribers_know():
    assert TRACK_KINDS == ("new", "found", "update", "lost", "ended")
    for kind in TRACK_KINDS:
        assert json.dumps(track_event(kind, tracklet(), 101.5)) == TRACK.format(kind)
    bare = '{"event": "update", "camera": "cam1", "local_id": 7, "global_id": null, ' + BOX_T
    assert json.dumps(track_event("update", tracklet(False, None), 101.5)) == bare
    empty = tracklet(False)
    empty.floor = FloorTrack()  # calibrated, no point yet: no floor field
    assert json.dumps(track_event("update", empty, 101.5)) == bare.replace("null", "5")


def test_identity_events_are_the_json_subscribers_know_from_runtime_and_hub_tracklets():
    assert IDENTITY_KINDS == ("new", "assigned", "merged", "reassigned", "expired")
    ident = Identity(5, 90.0, 101.5, "cam1", cameras={"cam2", "cam1"})
    sealed = Identity(6, 90.0, 101.5, "cam1", cameras={"cam1"}, sealed=True)
    head = '"cameras": ["cam1", "cam2"], "last_seen": 101.5'
    expected = [
        (
            decision_event(Decision("new", 5, ("cam1", 7)), ident, tracklet()),
            '{"event": "new", "global_id": 5, "cameras": ["cam1"], "last_seen": 101.5, "camera": "cam1", '
            '"local_id": 7, ' + BOX_T,
        ),
        (
            decision_event(Decision("new", 6, ("cam1", 7)), sealed, tracklet()),
            '{"event": "new", "global_id": 6, "cameras": ["cam1"], "last_seen": 101.5, "sealed": true, '
            '"camera": "cam1", "local_id": 7, ' + BOX_T,
        ),
        (
            decision_event(Decision("assigned", 5, ("cam2", 3)), ident, HubShaped()),
            '{"event": "assigned", "global_id": 5, ' + head + ', "camera": "cam2", "local_id": 3, ' + BOX_HUB,
        ),
        (
            decision_event(Decision("merged", 5, None, 9), ident, None),
            '{"event": "merged", "global_id": 5, ' + head + ', "from": 9, "into": 5}',
        ),
        (
            decision_event(Decision("merged", 5, ("cam1", 7), 9), ident, tracklet()),
            '{"event": "merged", "global_id": 5, ' + head + ', "from": 9, "into": 5, "camera": "cam1", "local_id": 7}',
        ),
        (
            decision_event(Decision("reassigned", 12, ("cam3", 4), 5), ident, HubShaped()),
            '{"event": "reassigned", "global_id": 12, ' + head + ', "from": 5, "into": 12, "camera": "cam3", '
            '"local_id": 4, ' + BOX_HUB,
        ),
        (
            decision_event(Decision("expired", 5, None, None, ("cam3", "cam1")), None, None),
            '{"event": "expired", "global_id": 5, "cameras": ["cam3", "cam1"]}',
        ),
        (
            decision_event(Decision("assigned", 5, ("cam2", 3)), None, HubShaped()),
            '{"event": "assigned", "global_id": 5, "cameras": [], "last_seen": 200.5, "camera": "cam2", '
            '"local_id": 3, ' + BOX_HUB,
        ),
        (
            decision_event(Decision("new", 5, ("cam2", 3), None, ("cam2",)), None, None),
            '{"event": "new", "global_id": 5, "cameras": ["cam2"], "camera": "cam2", "local_id": 3}',
        ),
    ]
    for header, text in expected:
        assert json.dumps(header) == text


def test_the_publisher_sends_the_builders_json_and_the_decoder_reads_it_back():
    endpoint = "tcp://127.0.0.1:5811"
    pub = EventPublisher(endpoint)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt_string(zmq.SUBSCRIBE, "")
    sub.connect(endpoint)
    try:
        header = track_event("new", tracklet(), 101.5)
        emb = np.arange(4, dtype=np.float32) / 4
        deadline = time.monotonic() + 10
        while not sub.poll(100):  # a SUB misses what is sent before it is connected
            assert time.monotonic() < deadline
            pub.publish("track/cam1", header, emb, jpeg=b"\xff\xd8jpeg")
        parts = sub.recv_multipart()
    finally:
        sub.close(0)
        pub.close()
    event = decode(parts)
    h = event.header
    sent = {"schema": SCHEMA, "version": SCHEMA_VERSION, **header, "embedding_dim": 4, "jpeg_bytes": 6}
    assert parts[1] == json.dumps({**sent, "seq": h["seq"], "publish_ts": h["publish_ts"]}).encode()
    assert event.topic == "track/cam1" and event.family == "track" and event.supported
    assert event.jpeg == b"\xff\xd8jpeg" and np.array_equal(event.embedding, emb.astype(np.float16))


def test_the_decoder_names_what_is_wrong_and_reads_any_schema():
    for parts, why in [
        ([b"identity/1"], "IndexError: list index out of range"),
        ([b"identity/1", b"not json"], "JSONDecodeError: Expecting value"),
        ([b"identity/1", b"[1]"], "ValueError: the header is not a JSON object"),
        ([b"\xff", b"{}"], "UnicodeDecodeError: "),
    ]:
        with pytest.raises(MalformedEvent, match="^" + why.replace("[", r"\[")):
            decode(parts)
    other = decode([b"stats", b'{"schema": "other", "version": 9}', b"tail"])
    assert not other.supported and other.jpeg is None and other.embedding is None
    assert decode([b"x", json.dumps({"schema": SCHEMA, "version": 1}).encode()]).supported
