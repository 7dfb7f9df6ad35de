"""Helpers for the view's tests: start ``python -m edge.view`` as a real process, read its API."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Optional

from conftest import REPO


class ViewProcess:
    """``python -m edge.view ARGS --bind 127.0.0.1:0``; ``url`` once it serves."""

    def __init__(self, *args: str, env: Optional[dict] = None, bind: str = "127.0.0.1:0", timeout: float = 30.0):
        environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.view", *args, "--bind", bind],
            cwd=REPO,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
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

    def state(self) -> dict:
        status, body, _ = self.get("api/state")
        assert status == 200, body
        return json.loads(body)

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 20.0, what: str = "") -> dict:
        deadline = time.monotonic() + timeout
        state = self.state()
        while not predicate(state):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {json.dumps(state)[:2000]}")
            time.sleep(0.1)
            state = self.state()
        return state

    def close(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.stderr.read() if self.proc.stderr else ""
