"""The view as a child process, for the benchmarks (``scripts/bench_view.py``) and the tests:
start ``python -m edge.view``, wait for the address it prints, read its JSON API, stop it; and
the flags a headless Chromium opens the page with (in a container: no sandbox, no GPU, nothing
fetched in the background).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[2]  # the folder holding the edge package (the checkout)

HEADLESS_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


class ViewProcess:
    """``python -m edge.view ARGS --bind 127.0.0.1:0``; ``url`` once it serves."""

    def __init__(self, *args: str, env: Optional[dict] = None, bind: str = "127.0.0.1:0", timeout: float = 30.0):
        environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.view", *args, "--bind", bind],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None  # stdout=PIPE
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            m = re.search(r"view: (http://\S+)", line)
            if m:
                self.url = m.group(1).replace("localhost", "127.0.0.1")
                return
            if self.proc.poll() is not None:
                break
        err = self.close()
        raise RuntimeError(f"edge.view did not start: {line!r} {err}")

    def get(self, path: str, headers: Optional[dict] = None) -> tuple[int, bytes, dict]:
        req = urllib.request.Request(self.url + path.lstrip("/"), headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def state(self) -> dict[str, Any]:
        status, body, _ = self.get("api/state")
        assert status == 200, body
        return json.loads(body)

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 20.0, what: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        state = self.state()
        while not predicate(state):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {json.dumps(state)[:2000]}")
            time.sleep(0.1)
            state = self.state()
        return state

    def close(self) -> str:
        """Stop the view (SIGTERM, then SIGKILL after 10 s); its stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.stderr.read() if self.proc.stderr else ""
