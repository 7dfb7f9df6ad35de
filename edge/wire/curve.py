"""CURVE keys and who may talk to whom (pyzmq's ``zmq.auth``).

Every hop of the site (node -> hub, hub -> subscribers, ``edge.run``'s publisher beyond
localhost) is a CURVE server with a secret key and an allow-list of client public keys (a folder
of ``*.key`` files made by ``python -m edge.keys``). One :class:`zmq.auth.thread.ThreadAuthenticator`
per context answers ZAP requests; each socket names its own allow-list with a ZAP domain. A
refused client is logged with its key id (the first 8 characters of its z85 public key).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import zmq
import zmq.auth
from pydantic import Field
from zmq.auth.thread import ThreadAuthenticator

from core.configio import StrictModel

log = logging.getLogger(__name__)


class CurveServer(StrictModel):
    """This end binds: its secret key and the folder of client public keys allowed in."""

    secret_key: str = Field(description="this server's .key_secret file (python -m edge.keys)")
    allow: str = Field(description="folder of *.key public keys of the clients allowed to connect")


class CurveClient(StrictModel):
    """This end connects: its own secret key and the server's public key."""

    secret_key: str = Field(description="this client's .key_secret file")
    server_key: str = Field(description="the server's public .key file")


class KeyFileError(ValueError):
    """A key file or allow-list that cannot be used (one line naming the file)."""


def key_id(public_z85: bytes | str) -> str:
    """Short printable id of a public key (what logs and stats show)."""
    text = public_z85.decode() if isinstance(public_z85, bytes) else public_z85
    return text[:8]


def load_secret(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys from a ``.key_secret`` file."""
    p = Path(path)
    try:
        public, secret = zmq.auth.load_certificate(p)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{p}: not a readable CURVE secret key file ({exc})") from None
    if secret is None:
        raise KeyFileError(
            f"{p}: a public key file; this needs its secret one (the .key_secret file made by python -m edge.keys)"
        )
    return public, secret


def load_public(path: str | Path) -> bytes:
    """The z85 public key of a ``.key`` (or ``.key_secret``) file."""
    p = Path(path)
    try:
        public, _ = zmq.auth.load_certificate(p)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{p}: not a readable CURVE public key file ({exc})") from None
    return public


def load_allow_list(folder: str | Path) -> set[bytes]:
    """Public keys of every ``*.key`` file in ``folder`` (the clients allowed in)."""
    p = Path(folder)
    if not p.is_dir():
        raise KeyFileError(f"{p}: allow-list folder not found")
    keys = {public.encode() for public in allow_list_names(p)}
    if not keys:
        raise KeyFileError(f"{p}: allow-list folder holds no *.key public key files")
    return keys


def allow_list_names(folder: str | Path) -> dict[str, str]:
    """Public key (z85 text, as ZeroMQ reports a CURVE client's User-Id) -> the name of its
    ``<name>.key`` file: a node may only call itself by its key file's name."""
    names = {}
    for path in sorted(Path(folder).glob("*.key")):
        names[load_public(path).decode()] = path.stem
    return names


def is_local(endpoint: str) -> bool:
    """True when a bind address is reachable from this machine only (loopback, ipc://, inproc://)."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # '*' or an interface name: every interface
        return False


def check_bind(endpoint: str, secured: bool, insecure: bool, what: str) -> None:
    """Refuse to expose identities in clear text: a non-local bind needs CURVE keys, unless the
    config says ``insecure: true`` explicitly."""
    if secured or is_local(endpoint):
        return
    if not insecure:
        raise ValueError(
            f"{what} binds {endpoint} beyond localhost without CURVE keys: "
            f"configure curve (python -m edge.keys) or set insecure: true explicitly"
        )
    log.warning("%s binds %s beyond localhost WITHOUT encryption or authentication (insecure: true)", what, endpoint)


class AllowList:
    """ZAP credentials provider: a client key is in, or refused and counted (logged with its id)."""

    def __init__(self, keys: set[bytes], domain: str):
        self.keys = set(keys)
        self.domain = domain
        self.refused: dict[str, int] = {}
        self._lock = threading.Lock()

    def callback(self, domain: str, client_key: bytes) -> bool:
        if client_key in self.keys:
            return True
        kid = key_id(client_key)
        with self._lock:
            self.refused[kid] = self.refused.get(kid, 0) + 1
        log.warning("refused a client on %s: key %s is not on the allow-list", self.domain, kid)
        return False


class Guard:
    """One ZAP authenticator per context; sockets join with :meth:`serve` (server side)."""

    def __init__(self, context: Optional[zmq.Context] = None):
        self.context = context or zmq.Context.instance()
        self._auth: Optional[ThreadAuthenticator] = None
        self.allow_lists: dict[str, AllowList] = {}

    def serve(self, socket: zmq.Socket, secret_file: str | Path, allow_folder: str | Path, domain: str) -> AllowList:
        """Make ``socket`` a CURVE server whose clients must be in ``allow_folder``."""
        public, secret = load_secret(secret_file)
        allow = AllowList(load_allow_list(allow_folder), domain)
        if self._auth is None:
            self._auth = ThreadAuthenticator(self.context, log=logging.getLogger("zmq.auth"))
            self._auth.start()
        self._auth.configure_curve_callback(domain=domain, credentials_provider=allow)
        self.allow_lists[domain] = allow
        socket.zap_domain = domain.encode()
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_server = True
        return allow

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


def as_client(socket: zmq.Socket, secret_file: str | Path, server_public_file: str | Path) -> bytes:
    """Make ``socket`` a CURVE client of the server whose public key is in ``server_public_file``;
    returns this client's public key."""
    public, secret = load_secret(secret_file)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = load_public(server_public_file)
    return public


def make_keys(folder: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``<name>.key`` (public, share it) and ``<name>.key_secret`` (keep it) into ``folder``."""
    p = Path(folder)
    p.mkdir(parents=True, exist_ok=True)
    for suffix in (".key", ".key_secret"):
        if (p / f"{name}{suffix}").exists():
            raise KeyFileError(f"{p / (name + suffix)} exists: not overwritten (remove it first to make a new pair)")
    public, secret = zmq.auth.create_certificates(p, name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)
