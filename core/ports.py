"""Loopback ports for servers a process starts itself (a NATS server, a hub's sockets, a test's).

A port the kernel hands out for ``bind(0)`` comes from its ephemeral range, the range it also
takes from for every outgoing connection: between the probe closing and the server binding, a
client anywhere on the machine may get it as its local port, and the server then fails with
"Address already in use" (seen in CI: a hub's event publisher). The ports here come from outside
that range, where nothing is handed out on its own, and never twice from one process.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Sequence
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000
_given: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux; IANA's 49152-65535 elsewhere)."""
    try:
        low, high = (int(v) for v in _RANGE_FILE.read_text().split()[:2])
        return low, high
    except (OSError, ValueError):
        return 49152, 65535


def _outside_ephemeral() -> list[range]:
    """The port ranges no outgoing connection takes from: below the ephemeral range (from 10000)
    and above it."""
    low, high = _ephemeral_range()
    return [r for r in (range(_LOWEST, low), range(high + 1, 65536)) if len(r) >= 1000]


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing listens on now and that no outgoing connection will take.

    Falls back to the kernel's choice when the ephemeral range leaves too few ports outside it
    (a container's ``1024 65535``)."""
    ranges = _outside_ephemeral()
    for _ in range(200 if ranges else 0):
        port = random.choice(random.choice(ranges))
        if port not in _given and _can_bind(host, port):
            _given.add(port)
            return port
    for _ in range(20):
        with socket.socket() as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _given:
            break
    _given.add(port)
    return port


def free_base(offsets: Sequence[int], host: str = "127.0.0.1") -> int:
    """A port ``base`` such that ``base + o`` is free for every offset ``o``, all of them outside
    the ephemeral range and given to this process (a cluster's client and route ports:
    ``edge.stream.server.cluster``)."""
    span = max(offsets) + 1
    ranges = [range(r.start, r.stop - span) for r in _outside_ephemeral() if len(r) > span]
    for _ in range(200 if ranges else 0):
        base = random.choice(random.choice(ranges))
        ports = [base + o for o in offsets]
        if not _given.intersection(ports) and all(_can_bind(host, p) for p in ports):
            _given.update(ports)
            return base
    raise RuntimeError(f"no {len(offsets)} free ports {list(offsets)} apart outside the ephemeral range")


def _can_bind(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
