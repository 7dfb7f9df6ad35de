"""A multipart message (the site protocol's frames) as one stream message payload and back:
each frame its 4-byte little-endian length, then its bytes."""

from __future__ import annotations

MAX_FRAMES = 64


def pack(frames: list[bytes]) -> bytes:
    return b"".join(len(f).to_bytes(4, "little") + bytes(f) for f in frames)


def unpack(payload: bytes) -> list[bytes]:
    """The frames of ``payload``; ValueError when it is not a packed message."""
    frames: list[bytes] = []
    at = 0
    while at < len(payload):
        if len(frames) >= MAX_FRAMES or at + 4 > len(payload):
            raise ValueError("not a packed multipart message")
        n = int.from_bytes(payload[at : at + 4], "little")
        if at + 4 + n > len(payload):
            raise ValueError("not a packed multipart message (a frame runs past the end)")
        frames.append(payload[at + 4 : at + 4 + n])
        at += 4 + n
    return frames
