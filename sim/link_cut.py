"""A simulated network link that a test or a benchmark can cut and restore: a TCP relay on loopback
(``tests/test_stream.py``'s 60 s cut, ``scripts/bench_stream.py``'s ten minutes).

While the link is cut nothing crosses it either way, not even an end closing its connection, and
no new connection reaches the server, but no connection is closed by the link: what was sent
waits and arrives when the link is back, as TCP's retransmissions deliver it after a real cut,
unless an end gave up on its connection meanwhile.
That is a cable pulled or a radio link lost (a silent link), the harder case for a client than a
server that is down and refuses at once."""

from __future__ import annotations

import asyncio
import socket
import threading


class LinkCut:
    """Relays ``127.0.0.1:port`` to ``127.0.0.1:target_port`` on its own thread; ``cut()`` and
    ``restore()`` from any thread."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._up = asyncio.Event()
        self._listening = threading.Event()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="link-cut", daemon=True)
        # bound now, listened on in start(): the port is ours from here on (a probe closed and
        # bound again later could lose it to another process's outgoing connection)
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> LinkCut:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def cut(self) -> None:
        """Cut (returns once nothing more crosses; a chunk being written may still arrive)."""
        asyncio.run_coroutine_threadsafe(self._set(False), self._loop).result(10)

    def restore(self) -> None:
        asyncio.run_coroutine_threadsafe(self._set(True), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> LinkCut:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _set(self, up: bool) -> None:
        (self._up.set if up else self._up.clear)()

    async def _listen(self) -> None:
        self._up.set()
        self._server = await asyncio.start_server(self._relay, sock=self._socket)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._socket.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._up.wait()  # a connection made during a cut reaches nothing until the link is back
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(self._pump(client_r, server_w), self._pump(server_r, client_w))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            client_w.close()
            self._tasks.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._up.wait()  # held while the link is cut, delivered when it is back
                sink.write(data)
                await sink.drain()
            await self._up.wait()  # an end that closed: the other hears it when the link is back
        finally:
            sink.close()
