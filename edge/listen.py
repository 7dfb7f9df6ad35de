"""``python -m edge.listen --endpoint tcp://127.0.0.1:5555 [--topic identity] [--json]``: print events.

By default each event is one readable line (``identity 7 merged into 3``, ``cam1/12 moved from
identity 5 to 3``, ...); ``--json`` prints the topic and the raw JSON header instead.
``--record FILE`` also writes every raw message with its receive time (:mod:`edge.wire.recording`),
for ``python -m edge.view --replay FILE``; ``--quiet`` prints nothing while recording.
Messages are read by the schema's one decoder, :func:`edge.wire.events.decode`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any

import numpy as np
import zmq

from edge.site.report import summary_line
from edge.wire.events import decode as decode_event
from edge.wire.events import problem

NUDGE_S = 10.0  # nothing received for this long: say once what might be wrong
# The longest the listener waits inside libzmq at a time. A Ctrl-C that lands after Python last
# checked its signals but before libzmq's poll() starts interrupts nothing, so a blocking recv()
# would wait for ever (it happened in CI); a bounded poll sees the pending signal at its next turn.
POLL_MS = 200


def decode(parts: list[bytes]) -> tuple[str, dict, np.ndarray | None]:
    """A multipart event -> (topic, header, embedding or None), for scripts that want the three
    (:func:`edge.wire.events.decode` gives the whole :class:`~edge.wire.events.Event`)."""
    event = decode_event(parts)
    return event.topic, event.header, event.embedding


def describe(topic: str, h: dict) -> str:
    """One readable line for an event (the schema's fields, nothing lost that an operator needs)."""
    kind, gid = h.get("event"), h.get("global_id")
    where = f"{h['camera']}/{h['local_id']}" if "camera" in h and "local_id" in h else ""
    if topic.startswith("identity/"):
        seen_in = ", ".join(h.get("cameras", []))
        texts: dict[Any, str] = {  # keyed by whatever JSON value ``event`` holds
            "new": f"identity {gid} new: {where}",
            "assigned": f"identity {gid} <- {where} (seen in {seen_in})",
            "merged": f"identity {h.get('from')} merged into {h.get('into')} (seen in {seen_in})",
            "reassigned": f"{where} moved from identity {h.get('from')} to {h.get('into')}",
            "expired": f"identity {gid} expired (was in {seen_in})",
        }
        text = texts.get(kind, f"identity {gid} {kind}")
    elif topic.startswith("track/"):
        text = f"track {where} {kind} -> identity {gid if gid is not None else '?'}"
    elif topic == "stats":
        text = f"hub stats: {summary_line(h)}" if "hub_session" in h else node_stats(h)
    elif topic == "snapshot":
        text = f"snapshot: {len(h.get('identities', []))} identities"
    else:
        text = f"{topic} {kind}"
    if h.get("provisional"):  # a site node's own id while its hub is away (docs/events.md)
        text += " (provisional id: the hub was away)"
    return f"#{h.get('seq', '?')} {text}"


def _per_camera(values: dict) -> str:
    return " ".join(f"{camera}={v}" for camera, v in values.items())


def node_stats(h: dict) -> str:
    """A node's (or the view feed's) stats: per-camera fps and dropped frames, identities held;
    the fields a sender leaves out are left out (no ``gallery=None``)."""
    text = f"stats fps[{_per_camera(h.get('fps', {}))}]"
    if "gallery" in h:
        text += f" gallery={h['gallery']}"
    if isinstance(h.get("dropped"), dict):
        text += f" dropped[{_per_camera(h['dropped'])}]"
    if h.get("events_dropped"):
        text += f" events_dropped={h['events_dropped']}"
    return text


def readable(parts: list[bytes], raw_json: bool) -> str:
    """The printed line for one message; a malformed one says so instead of stopping the listener."""
    try:
        event = decode_event(parts)
        emb = event.embedding
        line = f"{event.topic} {json.dumps(event.header)}" if raw_json else describe(event.topic, event.header)
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
        return f"malformed message ({problem(exc)})"
    extra = f" embedding[{len(emb)}]" if emb is not None else ""
    return f"{line}{extra}"


def waiting_line(endpoint: str, topics: list[str] | None, curve: bool) -> str:
    """What the listener waits for, printed at start: a SUB socket connects silently, even when
    nothing listens at the other end, so without it a quiet publisher and a wrong endpoint look alike."""
    what = "every topic" if not topics or topics == [""] else "topics " + ", ".join(f"{t}*" for t in topics)
    return f"listening to {endpoint}{' (CURVE)' if curve else ''} for {what}; Ctrl-C stops"


def nudge_line(endpoint: str, after_s: float) -> str:
    """Said once when nothing came for ``--nudge-s``: a wrong endpoint is the usual cause."""
    return (
        f"nothing from {endpoint} in {after_s:g} s: is a publisher running there (edge.run's or "
        "edge.hub's publisher.endpoint)? still listening"
    )


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edge.listen", description=__doc__)
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    parser.add_argument("--topic", action="append", default=None, help="topic prefix (repeatable); default: everything")
    parser.add_argument("--count", type=int, default=0, help="exit after this many messages (0: run until Ctrl-C)")
    parser.add_argument("--json", action="store_true", help="print the topic and the raw JSON header of each event")
    parser.add_argument(
        "--secret-key", default=None, help="CURVE: this subscriber's .key_secret (a publisher with curve: needs it)"
    )
    parser.add_argument("--server-key", default=None, help="CURVE: the publisher's public .key")
    parser.add_argument(
        "--record",
        default=None,
        metavar="FILE",
        help="write the raw messages with their receive times (.gz: compressed)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing (with --record)")
    parser.add_argument(
        "--nudge-s",
        type=float,
        default=NUDGE_S,
        help="say once when nothing came for this many seconds (default %(default)g)",
    )
    args = parser.parse_args(argv)
    recorder = None
    if args.record:
        from edge.wire.recording import RecordingWriter

        try:
            recorder = RecordingWriter(args.record)
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
    context: zmq.Context = zmq.Context.instance()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    if args.secret_key or args.server_key:
        from edge.wire.curve import KeyFileError, as_client

        if not (args.secret_key and args.server_key):
            parser.error("--secret-key and --server-key come together")
        try:
            as_client(sock, args.secret_key, args.server_key)
        except KeyFileError as exc:
            parser.error(str(exc))
    sock.connect(args.endpoint)
    for topic in args.topic or [""]:
        sock.setsockopt_string(zmq.SUBSCRIBE, topic)
    seen = 0
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM ends like Ctrl-C: the recording is closed whole
    try:
        if not args.quiet:
            print(waiting_line(args.endpoint, args.topic, bool(args.secret_key)), file=sys.stderr, flush=True)
        nudge_at = None if args.quiet else time.monotonic() + args.nudge_s
        while True:
            if not sock.poll(POLL_MS):
                if nudge_at is not None and time.monotonic() >= nudge_at:
                    print(nudge_line(args.endpoint, args.nudge_s), file=sys.stderr, flush=True)
                    nudge_at = None
                continue
            nudge_at = None
            parts = sock.recv_multipart(zmq.NOBLOCK)  # a message's parts arrive together
            if recorder is not None:
                recorder.write(parts, time.time())
            if not args.quiet:
                print(readable(parts, args.json), flush=True)
            seen += 1
            if args.count and seen >= args.count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        sock.close(0)
        if recorder is not None:
            recorder.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
