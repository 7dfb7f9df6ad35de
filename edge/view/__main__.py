"""``python -m edge.view --events tcp://HOST:PORT``: the operator's live view in a browser.

Subscribes to a publisher of the event schema (``edge.run``), keeps a bounded state and serves
a page on http://127.0.0.1:8080: camera tiles, one card per person, their journey across
cameras, merges and reassignments, and the runtime's stats. ``--replay FILE`` serves a
recording (``python -m edge.listen --record FILE``) instead. Needs the ``[view]`` extra.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading

from core.cli import fail, setup_console_logging
from core.configio import ConfigError
from edge.view.config import ViewConfig, check_access, load_view_config, read_token

log = logging.getLogger("edge.view")


def parse_bind(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``HOST`` -> (host, port); IPv6 as ``[::1]:8080``."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, sep, port = value.rpartition(":")
        if not sep:
            host, port = value, ""
    if port and not port.isdigit():
        raise ConfigError(f"--bind {value!r}: expected HOST:PORT")
    return host or "127.0.0.1", int(port) if port else 8080


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m edge.view", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", default=None, help="publisher endpoint (default tcp://127.0.0.1:5555)")
    parser.add_argument("--replay", default=None, metavar="FILE", help="serve a recording instead of live events")
    parser.add_argument("--speed", type=float, default=None, help="replay speed (default 1: as recorded)")
    parser.add_argument(
        "--bind", default=None, help="HOST:PORT the page is served on (default 127.0.0.1:8080; port 0: any free one)"
    )
    parser.add_argument("--config", default=None, help="YAML file with the same settings (see edge/view/config.py)")
    parser.add_argument("--token-file", default=None, help="file holding the access token (else $CLIPREID_VIEW_TOKEN)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="non-local address without a token (behind an authenticating proxy only)",
    )
    parser.add_argument(
        "--server-key", default=None, help="CURVE: the publisher's public .key file (or its 40-character Z85 key)"
    )
    parser.add_argument("--key-file", default=None, help="CURVE: this view's secret certificate file")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_console_logging(args.verbose)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    try:
        host, port = parse_bind(args.bind) if args.bind else (None, None)
        cfg = load_view_config(
            args.config,
            {
                "events": args.events,
                "replay": args.replay,
                "speed": args.speed,
                "host": host,
                "port": port,
                "token_file": args.token_file,
                "insecure": args.insecure,
                "server_key": args.server_key,
                "key_file": args.key_file,
            },
        )
        token = read_token(cfg)
        check_access(cfg, token)
    except ConfigError as exc:
        fail(str(exc))
    serve(cfg, token)
    sys.exit(0)


def serve(cfg: ViewConfig, token: str | None) -> None:
    """Bind, start the message source with the app and serve until SIGINT/SIGTERM."""
    try:
        import uvicorn

        from edge.view.server import build_app
        from edge.view.state import ViewState
        from edge.view.subscribers import CurveError, LiveSource, ReplaySource, curve_client_keys
    except ImportError as exc:
        fail(f'the view needs the [view] extra: pip install -e ".[view]" ({exc.name} is missing)')

    state = ViewState(cfg.limits())
    stop = threading.Event()
    try:
        if cfg.replay:
            source: threading.Thread = ReplaySource(state, cfg.replay, stop, cfg.speed)
        else:
            curve = curve_client_keys(cfg.server_key, cfg.key_file) if cfg.server_key else None
            source = LiveSource(state, cfg.events, stop, curve)
    except (CurveError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as exc:
        stop.set()
        fail(f"cannot serve on {cfg.host}:{cfg.port}: {exc.strerror or exc}")
    sock.listen(2048)  # connections queue from now on, so the printed address answers at once
    port = sock.getsockname()[1]

    def stop_source() -> None:
        stop.set()
        source.join(timeout=2.0)

    app = build_app(state, token, on_start=source.start, on_stop=stop_source, local_only=cfg.is_local and not token)
    what = f"replay of {cfg.replay} at {cfg.speed:g}x" if cfg.replay else f"events from {cfg.events}"
    shown = "localhost" if cfg.is_local else cfg.host
    log.info("serving %s on http://%s:%d/%s", what, shown, port, "?token=<token>" if token else "")
    print(f"view: http://{shown}:{port}/", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="on"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
