"""Loopback ports for servers a process starts itself (a NATS server, a hub's sockets, a test's).

A port the kernel hands out for ``bind(0)`` comes from its ephemeral range, the range it also
takes from for every outgoing connection: between the probe closing and the server binding, a
client anywhere on the machine may get it as its local port, and the server then fails with
"Address already in use" (seen in CI: a hub's event publisher). The ports here come from below
that range, where nothing is handed out on its own, and never twice from one process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000
_given: set[int] = set()


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (Linux; 32768 elsewhere, IANA's is higher)."""
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing listens on now and that no outgoing connection will take.

    Falls back to the kernel's choice when the range below the ephemeral one is too small."""
    top = _ephemeral_start()
    if top - _LOWEST >= 1000:
        for _ in range(200):
            port = random.randrange(_LOWEST, top)
            if port not in _given and _can_bind(host, port):
                _given.add(port)
                return port
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _can_bind(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
