"""Where the view's messages come from: a live ZeroMQ subscriber, or a recording replayed.

Both are threads that feed :class:`~edge.view.state.ViewState` and stop on their ``stop`` event
(checked at least every 100 ms). The live subscriber lets ZeroMQ reconnect by itself and watches
the socket's monitor, so the page can say "disconnected since ..." the moment the publisher goes
away and "connected" again when it comes back. With CURVE (``server_key``), the view connects as
a client with its own key pair (a ZeroMQ certificate file).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Optional

import zmq
from zmq.utils.monitor import recv_monitor_message

from edge.view.state import ViewState
from edge.wire.curve import KeyFileError, load_public, load_secret
from edge.wire.recording import read_recording

log = logging.getLogger(__name__)


class CurveError(ValueError):
    """A CURVE key or certificate that cannot be used."""


def curve_client_keys(server_key: str | bytes, key_file: Optional[str]) -> tuple[bytes, bytes, bytes]:
    """(client public, client secret, server public) for a CURVE client socket.

    ``key_file`` is a ZeroMQ secret certificate (``zmq.auth.create_certificates``); without
    one, the view makes a fresh key pair (enough when the publisher accepts any client key).
    """
    if not zmq.has("curve"):
        raise CurveError("this libzmq has no CURVE support")
    key = server_key
    if isinstance(key, str) and len(key) != 40 and Path(key).is_file():
        try:  # the publisher's .key file, as edge.listen and the site take it
            key = load_public(key)
        except KeyFileError as exc:
            raise CurveError(str(exc)) from None
    server = key.encode() if isinstance(key, str) else key
    if len(server) != 40:
        raise CurveError(
            f"server_key must be the publisher's 40-character Z85 public key, got {len(server)} characters"
        )
    if key_file is None:
        public, secret = zmq.curve_keypair()
        return public, secret, server
    path = Path(key_file)
    if not path.is_file():
        raise CurveError(f"CURVE key file not found: {path}")
    try:
        public, secret = load_secret(path)
    except KeyFileError as exc:
        raise CurveError(str(exc)) from None
    return public, secret, server


class LiveSource(threading.Thread):
    """SUB socket connected to ``endpoint``; every message into ``state``."""

    def __init__(
        self,
        state: ViewState,
        endpoint: str,
        stop: threading.Event,
        curve: Optional[tuple[bytes, bytes, bytes]] = None,
        reconnect_max_s: float = 2.0,
    ):
        super().__init__(name="view-subscriber", daemon=True)
        self.state, self.endpoint, self.stop = state, endpoint, stop
        self.context: zmq.Context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, 10000)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 200)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, int(reconnect_max_s * 1000))
        self.curve = curve is not None
        if curve is not None:
            public, secret, server = curve
            self.socket.curve_publickey, self.socket.curve_secretkey, self.socket.curve_serverkey = (
                public,
                secret,
                server,
            )
        self.socket.setsockopt_string(zmq.SUBSCRIBE, "")
        self.monitor = self.socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_DISCONNECTED
            | zmq.EVENT_CONNECTED
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        )
        try:
            self.socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self._close()
            raise ValueError(f"cannot connect to the events at {endpoint}: {exc}") from None
        state.set_connection("connecting", endpoint)

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        try:
            while not self.stop.is_set():
                ready = dict(poller.poll(100))
                if self.monitor in ready:
                    self._monitor_event(recv_monitor_message(self.monitor), self.curve)
                if self.socket in ready:
                    for _ in range(1000):  # drain what is there, then look at the monitor again
                        try:
                            parts = self.socket.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self.state.ingest(parts)
        finally:
            self._close()

    def _monitor_event(self, event: dict, curve: bool) -> None:
        kind = event["event"]
        # with CURVE the peer is there once the handshake succeeded; plain TCP: once connected
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED or (kind == zmq.EVENT_CONNECTED and not curve):
            if self.state.connection["state"] != "connected":
                log.info("connected to %s", self.endpoint)
                self.state.set_connection("connected")
        elif kind == zmq.EVENT_DISCONNECTED:
            if self.state.connection["state"] != "disconnected":
                log.warning("publisher at %s went away; reconnecting", self.endpoint)
                self.state.set_connection("disconnected")
        elif kind in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
            log.error(
                "CURVE handshake with %s failed (wrong server key, or this view's key is not allowed)", self.endpoint
            )
            self.state.set_connection("refused")

    def _close(self) -> None:
        try:
            self.socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(0)
        self.socket.close(0)


class ReplaySource(threading.Thread):
    """Messages of a recording, at their recorded pace divided by ``speed``; the state's clock
    follows the recording, so "live", "down since ..." read as they did during the run."""

    def __init__(self, state: ViewState, path: str | Path, stop: threading.Event, speed: float = 1.0):
        super().__init__(name="view-replay", daemon=True)
        if speed <= 0:
            raise ValueError(f"--speed must be above 0, got {speed}")
        self.path, self.stop, self.speed = Path(path), stop, speed
        if not self.path.is_file():
            raise FileNotFoundError(f"recording not found: {self.path}")
        self.state = state
        self.recorded_now: Optional[float] = None
        self._origin: Optional[tuple[float, float]] = None  # (wall, recorded) at the start
        state.clock = self.clock
        state.mode = "replay"
        self.done = threading.Event()

    def clock(self) -> float:
        """The recorded time the replay has reached (moves on between messages too)."""
        if self._origin is None:
            return self.recorded_now or 0.0
        wall0, rec0 = self._origin
        now = rec0 + (time.monotonic() - wall0) * self.speed
        return now if self.done.is_set() is False else (self.recorded_now or now)

    def run(self) -> None:
        self.state.set_connection("replay", str(self.path))
        for t, parts in read_recording(self.path):
            if self._origin is None:
                self._origin = (time.monotonic(), t)
            wait = (t - self._origin[1]) / self.speed - (time.monotonic() - self._origin[0])
            if wait > 0 and self.stop.wait(wait):
                return
            if self.stop.is_set():
                return
            self.recorded_now = t
            self.state.ingest(parts)
        self.done.set()
        self.state.set_connection("replay finished")
        log.info("replay of %s finished", self.path)
