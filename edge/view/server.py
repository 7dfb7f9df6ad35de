"""The view's web app (Starlette): the static page, its JSON/JPEG endpoints and a server-sent
event stream of state changes.

- ``/`` the page; ``/static/...`` its CSS and JS (shipped in the package, nothing from the internet);
- ``/stream``: server-sent events, the full state first, then what changed, at most every
  ``push_interval_s`` (so a flood of events costs the browser ten small updates a second, not
  a thousand);
- ``/api/state``, ``/api/identity/<id>`` (the journey), ``/frame/<camera>`` and ``/crop/<id>``.

Access: with a token, every request needs it, as ``Authorization: Bearer <token>``, the
``view_token`` cookie, or once as ``?token=`` (which sets the cookie, so a bookmarked link opens
the page and its image and event requests carry the cookie).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any, Optional
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edge.view.state import ViewState

STATIC = files("edge.view") / "static"
COOKIE = "view_token"


class TokenGate:
    """ASGI middleware: requests without the token get 401 (a one-line text body)."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token.encode()

    def _ok(self, candidate: Optional[str]) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        cookies = dict(c.strip().split("=", 1) for c in headers.get("cookie", "").split(";") if "=" in c)
        query = parse_qs(scope.get("query_string", b"").decode()).get("token", [None])[0]
        if self._ok(auth[7:] if auth.lower().startswith("bearer ") else None) or self._ok(cookies.get(COOKIE)):
            return await self.app(scope, receive, send)
        if self._ok(query):

            async def send_with_cookie(message):
                if message["type"] == "http.response.start":
                    message.setdefault("headers", [])
                    message["headers"] = list(message["headers"]) + [
                        (b"set-cookie", f"{COOKIE}={query}; HttpOnly; SameSite=Strict; Path=/".encode())
                    ]
                await send(message)

            return await self.app(scope, receive, send_with_cookie)
        response = PlainTextResponse(
            "access token required: open the link with ?token=... (see python -m edge.view --help)\n", 401
        )
        await response(scope, receive, send)


LOCAL_HOSTS = ["localhost", "127.0.0.1"]


def build_app(
    state: ViewState,
    token: Optional[str] = None,
    push_interval_s: float = 0.1,
    on_start: Optional[Callable[[], None]] = None,
    on_stop: Optional[Callable[[], None]] = None,
    local_only: bool = False,
):
    """The ASGI app over ``state``; ``on_start`` / ``on_stop`` start and stop its message source.

    ``local_only`` (a view bound to localhost without a token): requests must name localhost in
    their Host header, so a web page the operator opens cannot rebind its own domain to
    127.0.0.1 and read crops and previews from the browser (DNS rebinding).
    """
    stopping = asyncio.Event()

    @asynccontextmanager
    async def lifespan(app):
        if on_start:
            on_start()
        try:
            yield
        finally:
            stopping.set()
            if on_stop:
                on_stop()

    async def index(request: Request) -> Response:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-store"})

    async def api_state(request: Request) -> Response:
        return JSONResponse(state.full())

    async def api_identity(request: Request) -> Response:
        journey = state.journey(request.path_params["gid"])
        if journey is None:
            return JSONResponse(
                {"error": f"identity {request.path_params['gid']} is not held (never seen, or forgotten)"}, 404
            )
        return JSONResponse(journey)

    async def frame(request: Request) -> Response:
        data = state.frame(request.path_params["camera"])
        if data is None:
            return PlainTextResponse(f"no preview from camera {request.path_params['camera']!r}\n", 404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def crop(request: Request) -> Response:
        data = state.crop(request.path_params["crop_id"])
        if data is None:
            return PlainTextResponse("crop no longer held\n", 404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600, immutable"})

    async def stream(request: Request) -> Response:
        async def events():
            payload = state.full()
            version = payload["version"]
            yield _sse(payload)
            quiet = 0.0
            while not stopping.is_set() and not await request.is_disconnected():
                await asyncio.sleep(push_interval_s)
                quiet += push_interval_s
                if state.version != version or quiet >= 1.0:  # a heartbeat carries the clock and status
                    payload = state.delta(version)
                    version = payload["version"]
                    quiet = 0.0
                    yield _sse(payload)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )

    routes = [
        Route("/", index),
        Route("/api/state", api_state),
        Route("/api/identity/{gid:int}", api_identity),
        Route("/frame/{camera}", frame),
        Route("/crop/{crop_id:int}", crop),
        Route("/stream", stream),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=LOCAL_HOSTS)] if local_only else []
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    return TokenGate(app, token) if token else app


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"
