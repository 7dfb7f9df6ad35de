"""The event schema ``clipreid-edge.events`` (version 2): its kinds, the builders of its headers
and the one decoder every reader uses (``edge.listen``, ``edge.view``; offered to the site hub).

The wire format is described in ``docs/events.md``: a multipart message of a topic, a JSON
header, then optionally the identity's float16 embedding (``embedding_dim`` in the header) and,
always last, a JPEG (``jpeg_bytes``). :class:`~edge.wire.publisher.EventPublisher` adds
``schema``, ``version``, ``seq`` and ``publish_ts`` to the headers built here and sends them.

The builders read tracklets through the protocols below, so the runtime's
:class:`~edge.runtime.tracklets.Tracklet` and the site hub's ``HubTracklet`` both feed them, and
the engine's decisions and identities through :class:`DecisionLike` / :class:`IdentityLike`.
Their JSON must stay byte for byte what subscribers (and recordings) already hold:
``tests/test_wire_events.py`` pins one header of each kind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional, Protocol, get_args

import numpy as np

SCHEMA = "clipreid-edge.events"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, SCHEMA_VERSION)  # what a reader of this schema understands

# Topic families: the part of the topic before ``/`` (``track/cam1``, ``identity/5``, ``stats``).
Family = Literal["track", "identity", "frame", "stats", "snapshot"]
# ``event`` of a ``track/<camera>`` message: a tracklet's lifecycle.
TrackKind = Literal["new", "found", "update", "lost", "ended"]
# ``event`` of an ``identity/<global_id>`` message: a decision of the identity engine.
IdentityKind = Literal["new", "assigned", "merged", "reassigned", "expired"]

TRACK_KINDS: tuple[TrackKind, ...] = get_args(TrackKind)
IDENTITY_KINDS: tuple[IdentityKind, ...] = get_args(IdentityKind)


# --- what the builders read --------------------------------------------------------------------
class FloorSamples(Protocol):
    """A tracklet's floor track (:class:`~edge.identity.geometry.FloorTrack`): its latest point is sent."""

    @property
    def points(self) -> Sequence[tuple[float, float]]: ...

    def __len__(self) -> int: ...


class SeenTracklet(Protocol):
    """What an identity event reads of the tracklet behind a decision (runtime ``Tracklet``, site
    ``HubTracklet``): where it was last seen and how."""

    @property
    def camera_id(self) -> str: ...

    @property
    def xyxy(self) -> Iterable[float]: ...

    @property
    def conf(self) -> float: ...

    @property
    def last_seen(self) -> float: ...

    @property
    def last_frame(self) -> int: ...


class TrackedTracklet(Protocol):
    """What a track event reads of a tracklet (the runtime's ``Tracklet``)."""

    @property
    def camera_id(self) -> str: ...

    @property
    def local_id(self) -> int: ...

    @property
    def global_id(self) -> Optional[int]: ...

    @property
    def xyxy(self) -> Iterable[float]: ...

    @property
    def conf(self) -> float: ...

    @property
    def last_frame(self) -> int: ...

    @property
    def floor(self) -> Optional[FloorSamples]: ...


class DecisionLike(Protocol):
    """What an identity event reads of an engine :class:`~edge.identity.records.Decision`."""

    @property
    def kind(self) -> str: ...

    @property
    def global_id(self) -> int: ...

    @property
    def key(self) -> Optional[tuple[str, int]]: ...

    @property
    def previous(self) -> Optional[int]: ...

    @property
    def cameras(self) -> Sequence[str]: ...


class IdentityLike(Protocol):
    """What an identity event reads of the engine's identity as it stands after the decision."""

    @property
    def cameras(self) -> Iterable[str]: ...

    @property
    def last_seen(self) -> float: ...

    @property
    def sealed(self) -> bool: ...


# --- builders ---------------------------------------------------------------------------------
def _box(xyxy: Iterable[float]) -> list[float]:
    x0, y0, x1, y1 = (round(float(v), 1) for v in xyxy)
    return [x0, y0, x1, y1]


def track_event(event: str, t: TrackedTracklet, capture_ts: float, provisional: bool = False) -> dict[str, Any]:
    """Header fields for a tracklet event (``event``: one of :data:`TRACK_KINDS`); ``provisional``:
    its ``global_id`` is one a site node gave while its hub was away (:func:`provisional_field`).

    ``event`` is typed ``str`` while the runtime's tracklet book hands its lifecycle events over as
    plain strings; :data:`TrackKind` names the values."""
    return {
        "event": event,
        "camera": t.camera_id,
        "local_id": t.local_id,
        "global_id": t.global_id,
        "bbox": _box(t.xyxy),
        "score": round(float(t.conf), 3),
        "capture_ts": capture_ts,
        "frame": t.last_frame,
        **floor_field(t.floor),
        **provisional_field(provisional),
    }


def provisional_field(provisional: bool) -> dict[str, Any]:
    """``{"provisional": true}`` on an event whose ``global_id`` a site node gave itself while its
    hub was away (not a site id: the hub maps it onto one when it answers again); nothing
    otherwise, so a standalone box's and a hub's events are as they were."""
    return {"provisional": True} if provisional else {}


def floor_field(floor: Optional[FloorSamples]) -> dict[str, Any]:
    """``{"floor": [x, y]}``: the tracklet's latest floor position in metres (calibrated cameras);
    nothing when it has none."""
    if floor is None or not len(floor):
        return {}
    x, y = floor.points[-1]
    return {"floor": [round(float(x), 2), round(float(y), 2)]}


def decision_event(
    d: DecisionLike, ident: Optional[IdentityLike] = None, t: Optional[SeenTracklet] = None
) -> dict[str, Any]:
    """Header fields for an identity event, from an identity engine decision.

    ``new`` / ``assigned``: tracklet ``t`` founded / joined ``global_id``; ``merged``: identity
    ``from`` is the same person as ``into`` (= ``global_id``) and is folded into it; ``reassigned``:
    tracklet (``camera``, ``local_id``) moved ``from`` one identity ``into`` another; ``expired``:
    ``global_id`` unseen for the time to live. A new identity was founded by ``t`` alone, so its
    ``cameras`` is ``t``'s camera even when other tracklets joined it in the same round (they get
    their own ``assigned`` events). ``ident`` is the identity as it stands now (None once gone).
    """
    if d.kind == "new" and t is not None:
        cameras = [t.camera_id]
    else:
        cameras = sorted(ident.cameras) if ident is not None else list(d.cameras)
    out: dict[str, Any] = {"event": d.kind, "global_id": d.global_id, "cameras": cameras}
    last_seen = ident.last_seen if ident is not None else (t.last_seen if t is not None else None)
    if last_seen is not None:
        out["last_seen"] = last_seen
    if d.kind == "new" and ident is not None and ident.sealed:
        out["sealed"] = True  # founded by a tracklet too short to match: nothing will join it
    if d.kind in ("merged", "reassigned"):
        out["from"], out["into"] = d.previous, d.global_id
    if d.key is not None:
        out.update(camera=d.key[0], local_id=d.key[1])
    if t is not None and d.kind != "merged":
        out.update(bbox=_box(t.xyxy), score=round(float(t.conf), 3), capture_ts=t.last_seen, frame=t.last_frame)
    return out


# --- the decoder ------------------------------------------------------------------------------
class MalformedEvent(ValueError):
    """A message whose frames are not a topic and a JSON object header. Its text is
    ``<what failed>: <why>`` (``JSONDecodeError: Expecting value ...``), the form
    ``edge.listen`` prints and the view logs."""


def problem(exc: Exception) -> str:
    """``<exception type>: <message>`` for a message that could not be read; a
    :class:`MalformedEvent` already says it that way."""
    return str(exc) if isinstance(exc, MalformedEvent) else f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Event:
    """One received message: its topic, its JSON header and the parts the header announces.

    The header is the publisher's dict as sent: readers take the fields they know and leave the
    others (a newer minor addition), so nothing here validates a kind's fields.
    """

    topic: str
    header: dict[str, Any]
    embedding_part: Optional[bytes] = None  # raw little-endian float16, when ``embedding_dim`` is in the header
    jpeg: Optional[bytes] = None  # preview or crop, when ``jpeg_bytes`` is in the header

    @property
    def family(self) -> str:
        """The topic's family (a :data:`Family` of this schema; readers ignore others)."""
        return self.topic.split("/", 1)[0]

    @property
    def supported(self) -> bool:
        """Of this schema, in a version this code reads (:data:`READABLE_VERSIONS`)."""
        return self.header.get("schema") == SCHEMA and self.header.get("version") in READABLE_VERSIONS

    @property
    def embedding(self) -> Optional[np.ndarray]:
        """The identity's embedding, float16 (ValueError when its bytes are not whole float16s)."""
        return None if self.embedding_part is None else np.frombuffer(self.embedding_part, "<f2")


def decode(parts: Sequence[bytes]) -> Event:
    """A multipart message -> :class:`Event`; :class:`MalformedEvent` when its topic is not UTF-8,
    its header not a JSON object, or a frame is missing. Any schema and version decode (readers
    check :attr:`Event.supported`); the embedding is part 3 when ``embedding_dim`` is in the
    header, the JPEG the last part when ``jpeg_bytes`` is."""
    try:
        topic = parts[0].decode()
        header = json.loads(parts[1])
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (IndexError, UnicodeDecodeError, ValueError) as exc:
        raise MalformedEvent(problem(exc)) from exc
    extra = len(parts) > 2
    return Event(
        topic,
        header,
        embedding_part=parts[2] if extra and "embedding_dim" in header else None,
        jpeg=parts[-1] if extra and "jpeg_bytes" in header else None,
    )
