"""Serving an ASGI app with uvicorn on a socket bound up front (port 0 works), as a task on the running loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import threading
from collections.abc import Iterator

import uvicorn


def split_listen(listen: str) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' into (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class AppServer(uvicorn.Server):
    """uvicorn for one app. Signals are left to the caller unless `handle_signals` (then SIGINT/SIGTERM stop it).
    With `ssl_context` the socket speaks TLS only (monitor.webconfig builds the context)."""

    def __init__(self, app, host: str, port: int, *, handle_signals: bool = False,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
        if ssl_context is not None:
            # the context as built, whatever this uvicorn's own TLS options are: serve() uses config.ssl once loaded
            config.load()
            config.ssl = ssl_context
        super().__init__(config)
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        self.socket = socket.create_server((host, port), family=family, backlog=2048, dualstack_ipv6=False)
        self.port = self.socket.getsockname()[1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
        scheme = "https" if ssl_context is not None else "http"
        self.base_url = (f"{scheme}://[{shown}]:{self.port}" if ":" in shown and not shown.startswith("[")
                         else f"{scheme}://{shown}:{self.port}")
        self.handle_signals = handle_signals
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve in the background; returns once connections are accepted."""
        self._task = asyncio.create_task(self.serve(sockets=[self.socket]))
        while not self.started:
            if self._task.done():
                await self._task
                raise RuntimeError(f"the server on port {self.port} stopped during startup")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self.should_exit = True
        if self._task is not None:
            await self._task

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
