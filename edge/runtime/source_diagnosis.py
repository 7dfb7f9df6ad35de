"""Why a camera source gives no frames, found before or while it is opened (:class:`SourceError`).

OpenCV and FFmpeg print their own multi-line diagnostics to stderr and expose no reason through
their API, so :func:`quiet_opencv` silences them and these functions find the reason themselves
(the file's content, the device node, a timed-out or refused connection). Video files and image
folders are probed when the config is loaded (:func:`why_unreadable`), before any model loads;
the readers (:mod:`edge.runtime.readers`) ask :func:`stream_failure` / :func:`usb_failure` when an
open fails.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import cv2

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}


def quiet_opencv() -> None:
    """Silence OpenCV's and FFmpeg's own console output (a missing USB index prints 9 lines per
    retry, a bad file FFmpeg's ``moov atom not found``); our warnings carry the reason instead.
    A user who sets ``OPENCV_LOG_LEVEL`` or ``OPENCV_FFMPEG_LOGLEVEL`` keeps their choice. FFmpeg's
    level is read once, when OpenCV first uses FFmpeg: call this before any video is opened."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def redact(url: str) -> str:
    """``url`` without its password, for log lines (``rtsp://admin:***@10.0.0.5/stream1``)."""
    parsed = urlparse(url)
    if not parsed.password:
        return url
    return parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)).geturl()


class SourceError(RuntimeError):
    """A source that cannot be opened (bad path, unreachable stream, unknown scene)."""


def stream_failure(url: str, elapsed: float, timeout_s: float) -> str:
    """Why OpenCV could not open a stream URL: it timed out, or a plain TCP connection tells
    (unknown host, refused), or the server answers and the stream itself is the problem."""
    if elapsed >= 0.9 * timeout_s:
        return f"no answer within {timeout_s:g} s (open timeout)"
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or DEFAULT_PORTS.get(parsed.scheme.lower())
    if not host or not port:
        return "OpenCV/FFmpeg cannot open this URL"
    try:
        with socket.create_connection((host, port), timeout=max(0.1, timeout_s - elapsed)):
            pass
    except socket.gaierror:
        return f"unknown host {host!r}"
    except TimeoutError:
        return f"{host}:{port} does not answer"
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"
    return (
        "the server answers but OpenCV/FFmpeg cannot open the stream "
        "(wrong path or credentials, or an unsupported codec)"
    )


def usb_failure(index: int) -> str:
    """Why OpenCV could not open USB camera ``index`` (Linux: what its device node says)."""
    if not sys.platform.startswith("linux"):
        return f"no camera at index {index}, or it is in use"
    device = Path(f"/dev/video{index}")
    if not device.exists():
        return f"no such device {device}"
    if not os.access(device, os.R_OK | os.W_OK):
        return f"permission denied on {device} (is the user in the 'video' group?)"
    return f"{device} cannot be opened (in use by another program, or not a capture device)"


def why_unreadable(source: str) -> Optional[str]:
    """Why a video file or image folder cannot be a camera, or None when it can: probed by
    decoding its first frame (or image), so a bad source is a config error found before any
    model loads, with a reason instead of FFmpeg's ``moov atom not found``."""
    quiet_opencv()
    path = Path(source)
    if not path.exists():
        return "video file or image folder not found"
    if path.is_dir():
        folder, files = image_files(path)
        if not files:
            return f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}"
        return None if cv2.imread(str(files[0])) is not None else f"cannot decode its first image {files[0].name}"
    if path.stat().st_size == 0:
        return "an empty file (0 bytes)"
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return undecodable_reason(path)
        if not cap.read()[0]:
            return "OpenCV opens it but decodes no frame (truncated, or a codec this OpenCV build lacks)"
    finally:
        cap.release()
    return None


def undecodable_reason(path: Path) -> str:
    """What a file OpenCV cannot open is: text, an unfinished MP4 recording, or something else."""
    with path.open("rb") as f:
        head = f.read(4096)
    if head[4:8] == b"ftyp" and "moov" not in mp4_boxes(path):
        return "an MP4 without its index (no 'moov' box): truncated, or a recording that was never finished"
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return "a text file, not a video"
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 3:  # a character cut at the end of the 4 KiB read
                return "a text file, not a video"
    return "not a video OpenCV can decode"


def mp4_boxes(path: Path, limit: int = 1000) -> list[str]:
    """Top-level box types of an ISO media file (``ftyp``, ``mdat``, ``moov``, ...), from their
    headers; a recording cut short lacks ``moov``, which most writers put at the end."""
    size = path.stat().st_size
    kinds: list[str] = []
    pos = 0
    with path.open("rb") as f:
        while pos + 8 <= size and len(kinds) < limit:
            f.seek(pos)
            header = f.read(16)
            length, kind = struct.unpack(">I4s", header[:8])
            if length == 1 and len(header) == 16:
                length = struct.unpack(">Q", header[8:])[0]
            elif length == 0:
                length = size - pos
            if length < 8:
                break
            kinds.append(kind.decode("latin-1"))
            pos += length
    return kinds


def image_files(path: Path) -> tuple[Path, list[Path]]:
    """An image folder's frames, sorted: ``path/img1`` (a MOT Challenge sequence) or ``path``."""
    folder = path / "img1" if (path / "img1").is_dir() else path
    return folder, sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
