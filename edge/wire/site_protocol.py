"""Node <-> hub messages over ZeroMQ DEALER/ROUTER (the ZeroMQ guide's asynchronous client/server).

Every message is multipart: ``MAGIC``, kind, a UTF-8 JSON header, then raw little-endian arrays
described by the header's ``arrays`` list (``[dtype, shape]`` each). No pickle, nothing executed:
a frame that does not parse or does not match its description is a :class:`ProtocolError`.

Node -> hub (every one carries ``seq``, strictly increasing within a node's ``session``, so a
duplicate or replayed message is recognised and dropped):

- ``hello``: ``node``, ``session``, ``model_id``, ``embedding_dim``, ``cameras``;
- ``summaries``: ``now`` (the node's scene clock) and ``items``, one per tracklet that changed
  (see :class:`WireTracklet`); the appearance travels only when it changed, floor positions
  only the samples that are new;
- ``heartbeat``: ``now``; ``bye``: the node ends.

Hub -> node: ``welcome`` (``hub_session`` and the site ids the hub knows for this node's
session), ``refused`` (``reason``), ``ack`` (``seq``), ``ids`` (``ids``: ``[camera, local_id,
site_id]`` that changed, ``final``: the same for tracklets whose id is final, ``decisions``: the
identity decisions about this node's tracklets), ``heartbeat``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from core.embeddings import Embeddings

MAGIC = b"CRS1"
NODE_KINDS = ("hello", "summaries", "heartbeat", "bye")
HUB_KINDS = ("welcome", "refused", "ack", "ids", "heartbeat")
MAX_ARRAYS = 100000
_DTYPES = {"f4": "<f4", "f8": "<f8"}


def model_id(path: str | Path) -> str:
    """What a node and the hub compare: the model file's name and the start of its SHA-256."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return f"{Path(path).name}:{digest[:16]}"


class ProtocolError(ValueError):
    """A message that does not parse or breaks the protocol (dropped and counted, never fatal)."""


def _no_constants(name: str):
    raise ValueError(f"{name} is not a number this protocol takes")


@dataclass
class WireTracklet:
    """One tracklet as a node sends it: the engine's summary fields plus what events show.

    ``appearance`` None means "unchanged since the last message" when ``n_embeddings`` > 0;
    ``floor`` holds only the new samples, ``[N, 3]`` rows of (time, x, y) in metres.
    """

    camera: str
    local_id: int
    first_seen: float
    last_seen: float
    n_embeddings: int
    weight: float
    first_box: np.ndarray  # [4] xyxy
    last_box: np.ndarray  # [4] xyxy
    ended: bool
    conf: float = 0.0
    frame: int = 0
    appearance: Optional[Embeddings] = None
    floor: Optional[np.ndarray] = None


@dataclass
class Message:
    kind: str
    header: dict[str, Any]
    arrays: list[np.ndarray]


def encode(kind: str, header: dict[str, Any], arrays: tuple[np.ndarray, ...] | list[np.ndarray] = ()) -> list[bytes]:
    """Frames of one message."""
    desc, payload = [], []
    for a in arrays:
        a = np.ascontiguousarray(a)
        code = "f8" if a.dtype == np.float64 else "f4"
        a = a.astype(_DTYPES[code], copy=False)
        desc.append([code, list(a.shape)])
        payload.append(a.tobytes())
    head = dict(header, arrays=desc) if desc else dict(header)
    return [MAGIC, kind.encode(), json.dumps(head).encode()] + payload


def decode(frames: list[bytes], kinds: tuple[str, ...]) -> Message:
    """Parse and check one message (without the ROUTER's routing id)."""
    if len(frames) < 3 or frames[0] != MAGIC:
        raise ProtocolError("not a site message (bad magic or too few frames)")
    try:
        kind = frames[1].decode()
        header = json.loads(frames[2], parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"unreadable header: {exc}") from None
    if kind not in kinds:
        raise ProtocolError(f"unknown message kind {kind!r}")
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    desc = header.pop("arrays", [])
    if not isinstance(desc, list) or len(desc) != len(frames) - 3 or len(desc) > MAX_ARRAYS:
        raise ProtocolError(
            f"header describes {len(desc) if isinstance(desc, list) else '?'} arrays, message has {len(frames) - 3}"
        )
    arrays = []
    for d, raw in zip(desc, frames[3:]):
        try:
            code, shape = d
            dtype = np.dtype(_DTYPES[code])
            shape = tuple(int(n) for n in shape)
        except (KeyError, TypeError, ValueError):
            raise ProtocolError(f"bad array description {d!r}") from None
        if any(n < 0 for n in shape) or math.prod(shape) * dtype.itemsize != len(raw):
            raise ProtocolError(f"array {shape} {code} does not match its {len(raw)} bytes")
        a = np.frombuffer(raw, dtype).reshape(shape)
        if not np.all(np.isfinite(a)):
            raise ProtocolError("array holds NaN or infinity")
        arrays.append(a)
    return Message(kind, header, arrays)


def encode_tracklets(seq: int, now: float, items: list[WireTracklet], more: bool = False) -> list[bytes]:
    """A ``summaries`` message. ``more``: the step goes on in the next message (a step sent in
    several, each below the servers' ``max_payload``): a lockstep hub reads this one on its own and
    pairs only the step's last message with the other nodes' steps."""
    arrays: list[np.ndarray] = []

    def add(a: Optional[np.ndarray]) -> int:
        if a is None:
            return -1
        arrays.append(a)
        return len(arrays) - 1

    rows = []
    for t in items:
        app = t.appearance
        rows.append(
            {
                "camera": t.camera,
                "local_id": int(t.local_id),
                "first_seen": float(t.first_seen),
                "last_seen": float(t.last_seen),
                "n": int(t.n_embeddings),
                "weight": float(t.weight),
                "ended": bool(t.ended),
                "conf": float(t.conf),
                "frame": int(t.frame),
                "boxes": add(np.stack([np.asarray(t.first_box, np.float64), np.asarray(t.last_box, np.float64)])),
                "app": add(None if app is None else app.global_.astype(np.float32)),
                "parts": add(None if app is None or app.parts is None else app.parts.astype(np.float32)),
                "part_conf": add(None if app is None or app.part_conf is None else app.part_conf.astype(np.float32)),
                "floor": add(None if t.floor is None or not len(t.floor) else np.asarray(t.floor, np.float64)),
            }
        )
    header: dict = {"seq": seq, "now": float(now), "items": rows}
    if more:
        header["more"] = True
    return encode("summaries", header, arrays)


MAX_INT = 2**53  # what JSON numbers, SQLite integers and float64 all hold exactly


def _field(row: dict, name: str, kind: type | tuple[type, ...]):
    """A field of the kind asked for; numbers must be finite and integers within +-2**53."""
    value = row.get(name)
    if isinstance(value, bool) and kind is not bool:
        raise ProtocolError(f"item field {name!r} has the wrong type")
    if not isinstance(value, kind):
        raise ProtocolError(f"item field {name!r} missing or of the wrong type")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"item field {name!r} is not finite")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ProtocolError(f"item field {name!r} is out of range")
    return value


def _optional_field(row: dict, name: str, kind: type | tuple[type, ...], default):
    return default if row.get(name) is None else _field(row, name, kind)


def _array(arrays: list[np.ndarray], index, shape_check) -> Optional[np.ndarray]:
    if index == -1:
        return None
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(arrays):
        raise ProtocolError(f"item refers to array {index!r}, message has {len(arrays)}")
    a = arrays[index]
    if not shape_check(a.shape):
        raise ProtocolError(f"array of shape {a.shape} where another shape belongs")
    return a


def decode_tracklets(msg: Message, embedding_dim: int) -> tuple[float, list[WireTracklet]]:
    """``(now, items)`` of a ``summaries`` message; an appearance of another size than
    ``embedding_dim`` is a :class:`DimensionError`."""
    h = msg.header
    now, rows = h.get("now"), h.get("items")
    if (
        not isinstance(now, (int, float))
        or isinstance(now, bool)
        or not math.isfinite(now)
        or not isinstance(rows, list)
    ):
        raise ProtocolError("summaries need a finite 'now' and a list of 'items'")
    out = []
    for row in rows:
        if not isinstance(row, dict):
            raise ProtocolError("an item is not a JSON object")
        boxes = _array(msg.arrays, row.get("boxes"), lambda s: s == (2, 4))
        if boxes is None:
            raise ProtocolError("an item has no boxes")
        g = _array(msg.arrays, row.get("app", -1), lambda s: len(s) == 2 and s[0] == 1)
        if g is not None and g.shape[1] != embedding_dim:
            raise DimensionError(f"embedding size {g.shape[1]}, the hub's model gives {embedding_dim}")
        parts = _array(msg.arrays, row.get("parts", -1), lambda s: len(s) == 3 and s[0] == 1)
        part_shape = None if parts is None else parts.shape[:2]  # bound below: the check runs in this iteration
        part_conf = _array(
            msg.arrays, row.get("part_conf", -1), lambda s, expected=part_shape: expected is not None and s == expected
        )
        floor = _array(msg.arrays, row.get("floor", -1), lambda s: len(s) == 2 and s[1] == 3)
        if (parts is None) != (part_conf is None) or (parts is not None and g is None):
            raise ProtocolError("parts come with their confidences and a global appearance")
        camera = _field(row, "camera", str)
        if not camera or len(camera) > 200:
            raise ProtocolError("camera name empty or too long")
        try:  # what arrives over the network is normalised here, whatever the sender did
            appearance = (
                None
                if g is None
                else Embeddings.normalized(
                    g.copy(), None if parts is None else parts.copy(), None if part_conf is None else part_conf.copy()
                )
            )
        except ValueError as exc:
            raise ProtocolError(f"bad appearance: {exc}") from None
        t = WireTracklet(
            camera,
            _field(row, "local_id", int),
            float(_field(row, "first_seen", (int, float))),
            float(_field(row, "last_seen", (int, float))),
            _field(row, "n", int),
            float(_field(row, "weight", (int, float))),
            boxes[0].copy(),
            boxes[1].copy(),
            _field(row, "ended", bool),
            float(_optional_field(row, "conf", (int, float), 0.0)),
            _optional_field(row, "frame", int, 0),
            appearance,
            None if floor is None else floor.copy(),
        )
        if t.local_id < 0 or t.n_embeddings < 0 or t.last_seen < t.first_seen or t.weight < 0:
            raise ProtocolError(f"item {camera}/{t.local_id}: negative id/count or last_seen before first_seen")
        out.append(t)
    return float(now), out


class DimensionError(ProtocolError):
    """A node's embeddings are not the hub model's size (the node is refused)."""
