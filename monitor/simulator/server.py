"""The server: the simulator on a port until a signal (with receive stamps for the truth log), or on a running loop."""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import struct
import sys
import time
from typing import Any

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from ..serving import AppServer
from .app import create_app
from .stream import TRANSPORT_KEY
from .truth import RECEIVED_KEY, TruthLog

SO_TIMESTAMPNS = 35  # Linux (asm-generic): the kernel's receive time of each segment, as a timespec in recvmsg
_TIMESPEC = struct.Struct("=qq")


def _enable_receive_stamps(sock: socket.socket) -> bool:
    """On a listening socket: every accepted connection inherits kernel receive timestamps, and (TCP_DEFER_ACCEPT) a
    connection is handed to the server only once its first bytes have arrived, so that the request is always there
    to be peeked at when it is accepted (Linux). Clients see no difference: the kernel completes their connect as
    before. False when this system cannot stamp."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)  # seconds: a client silent longer comes anyway
    return True


def _kernel_receipt(transport: Any) -> float | None:
    """The kernel's receive time of the first bytes waiting on a just-accepted connection, read with MSG_PEEK (the
    bytes stay for the server); None when nothing has arrived yet or there is no stamp."""
    raw = transport.get_extra_info("socket")
    if raw is None or not hasattr(socket, "CMSG_SPACE"):
        return None
    try:
        with socket.socket(fileno=os.dup(raw.fileno())) as sock:
            flags = socket.MSG_PEEK | socket.MSG_DONTWAIT
            _, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(_TIMESPEC.size), flags)
    except OSError:  # nothing there yet (EAGAIN), or not a socket that can say
        return None
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds / 1e9
    return None


def _server_protocol(stamps: bool) -> type:
    """uvicorn's HTTP protocol (the one it would pick), putting each request's transport in its scope (TRANSPORT_KEY:
    the fast lane writes a paced stream's chunks there, see pacer.py). With `stamps`, it also notes when each
    request's first bytes arrived and passes that on in the scope: the truth log's `received`. The first request of a
    connection, waiting when the connection is accepted (always, with _enable_receive_stamps' deferred accept), gets
    the kernel's receive time ("kernel": what a busy origin's event loop takes to get to it is not the client's
    delay); a later request on a kept-alive connection, the time the event loop handed its bytes over ("loop"), before
    any parsing. Parsing (h11 in pure Python when httptools is absent), a task switch and starlette's routing come
    later: ~0.2 ms on an idle machine, more under load (the record's `app`)."""
    from uvicorn.config import HTTP_PROTOCOLS
    from uvicorn.importer import import_from_string

    base = import_from_string(HTTP_PROTOCOLS["auto"])

    class SimulatorProtocol(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._first_bytes: tuple[float, str] | None = None
            self._waiting: float | None = None  # the kernel's stamp of bytes waiting at the accept
            inner = self.app

            async def app(scope: Scope, receive: Receive, send: Send) -> None:  # one wrapper, both keys
                scope[TRANSPORT_KEY] = self.transport
                if stamps:
                    scope[RECEIVED_KEY], self._first_bytes = self._first_bytes, None  # the next request stamps anew
                await inner(scope, receive, send)

            self.app = app

        def connection_made(self, transport: Any) -> None:
            if stamps:
                self._waiting = _kernel_receipt(transport)
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            if stamps and self._first_bytes is None:
                waiting, self._waiting = self._waiting, None
                self._first_bytes = (waiting, "kernel") if waiting is not None else (time.time(), "loop")
            super().data_received(data)

    return SimulatorProtocol


def _configure(server: AppServer, stamps: bool) -> None:
    """The simulator's uvicorn: its protocol (_server_protocol), and no proxy-headers middleware (an origin has no
    proxy in front whose X-Forwarded-For it should believe, and each request skips a layer)."""
    server.config.http = _server_protocol(stamps)
    server.config.proxy_headers = False


class _AnnouncingServer(AppServer):
    """Prints the URL once connections are accepted, so scripts and tests can wait for that line."""

    NAME = "simulator"

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(f"sse-monitor {self.NAME} listening on {self.base_url}", flush=True)


def serve(host: str = "127.0.0.1", port: int = 8900, truth_log: str | None = None,
          truth_max_records: int = 1_000_000) -> None:
    """Run the simulator until SIGINT or SIGTERM; prints its URL once it accepts connections. `truth_log`: a file
    to append one JSON line of ground truth per request to (TruthLog), complete once this returns."""
    log = TruthLog(truth_log, truth_max_records) if truth_log else None
    try:
        server = _AnnouncingServer(create_app(log), host, port, handle_signals=True)
        _configure(server, stamps=log is not None)
        if log is not None:
            _enable_receive_stamps(server.socket)
        _freeze_what_stays()
        server.run(sockets=[server.socket])
    finally:
        if log is not None:
            log.close()
            if log.dropped:
                print(f"sse-monitor simulator: truth log {log.path}: {log.written} records written, "
                      f"{log.dropped} not (bound of {log.max_records} reached, or a write failed)",
                      file=sys.stderr, flush=True)


def _freeze_what_stays() -> None:
    """The collector's settings for a process that serves thousands of streams. Everything made so far (modules, the
    app) stays for good: frozen out of the collector's sight. Each waiting stream keeps a dozen young objects (its
    future, coroutines, generators' send objects), so a young collection walks them all (~5 ms at 1,000 streams): the
    middle generation is collected at every other one instead of every tenth, which keeps those pauses short, and a full
    collection (all streams' objects and uvicorn's garbage in cycles, ~0.2 s) waits for 1,000 of those."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 1, 1000)


class RunningSimulator:
    """The simulator as a task on the running loop: `async with RunningSimulator() as sim: sim.base_url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.base_url = ""
        self._server: AppServer | None = None

    def app(self) -> Starlette:
        return create_app()

    async def __aenter__(self) -> RunningSimulator:
        self._server = AppServer(self.app(), self.host, self.port)
        _configure(self._server, stamps=False)
        self.base_url, self.port = self._server.base_url, self._server.port
        await self._server.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        await self._server.stop()
