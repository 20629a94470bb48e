"""The network under httpx for probes: asyncio transports and protocols instead of httpcore's anyio backend."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import math
import socket
import ssl
import typing
from functools import cache

import certifi
import httpcore
import httpx


@cache
def ssl_context(verify: bool) -> ssl.SSLContext:
    """One SSL context per process and mode: building one costs ~20 ms of CPU."""
    context = ssl.create_default_context(cafile=certifi.where())
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# -- the network under httpx -------------------------------------------------------------------------------------------
#
# httpx's default network backend (httpcore on anyio) spends most of a stream's CPU on each read: an anyio cancel scope
# for the read timeout, exception-mapping context managers, pausing and resuming the transport around every receive.
# This backend does the same job on asyncio's transports and protocols directly: a read that finds data returns it at
# once, and a read that waits arms no timer of its own (one timer per connection checks a deadline and is re-armed
# lazily). Failures are httpcore's exceptions with the messages the anyio backend gives, so httpx and
# _classify_transport_error see exactly what they saw before.

READ_AHEAD_BYTES = 256 * 1024  # received but not yet read: past this, reading from the socket pauses
POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)  # httpx's defaults


class _Protocol(asyncio.Protocol):
    """Collects what arrives and wakes the one reader (or writer) waiting for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self.reader: asyncio.Future[None] | None = None
        self.writer: asyncio.Future[None] | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.tls = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(0)  # type: ignore[attr-defined]  # a write returns once the kernel has it

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > READ_AHEAD_BYTES and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake(self.reader)

    def eof_received(self) -> bool:
        self.eof = True
        self._wake(self.reader)
        return not self.tls  # over TCP the reader sees the end and the stream closes; TLS closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self._wake(self.reader)
        self._wake(self.writer)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake(self.writer)

    @staticmethod
    def _wake(waiter: asyncio.Future[None] | None) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Stream(httpcore.AsyncNetworkStream):
    """One connection, as httpcore reads and writes it."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol, tcp: asyncio.Transport | None = None) -> None:
        self._transport = transport
        self._protocol = protocol
        self._tcp = tcp or transport  # under TLS: the TCP transport beneath, closed directly (no close_notify wait)
        self._loop = asyncio.get_running_loop()
        self._deadline = math.inf
        self._timer: asyncio.TimerHandle | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        p = self._protocol
        if not p.chunks:
            if not (p.eof or p.lost):
                await self._wait_for_data(timeout)
            if not p.chunks:
                if p.error is not None:
                    raise httpcore.ReadError("") from p.error
                if self._transport.is_closing() and not p.lost and not p.eof:  # pragma: no cover - closed by us
                    raise httpcore.ReadError("")
                return b""  # the end of the stream
        chunks = p.chunks
        data = chunks.popleft()
        if len(data) > max_bytes:
            chunks.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        elif chunks and len(data) + len(chunks[0]) <= max_bytes:  # several arrived: hand over what fits, at once
            parts = [data]
            size = len(data)
            while chunks and size + len(chunks[0]) <= max_bytes:
                size += len(chunks[0])
                parts.append(chunks.popleft())
            data = b"".join(parts)
        p.size -= len(data)
        if p.reading_paused and p.size <= READ_AHEAD_BYTES:
            p.reading_paused = False
            self._transport.resume_reading()
        return data

    async def _wait_for_data(self, timeout: float | None) -> None:
        loop = self._loop
        reader = self._protocol.reader = loop.create_future()
        if timeout is not None:
            self._deadline = loop.time() + timeout
            if self._timer is None or self._timer.when() > self._deadline:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_at(self._deadline, self._check_deadline)
        try:
            await reader
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(exc) from exc
        finally:
            self._protocol.reader = None
            self._deadline = math.inf

    def _check_deadline(self) -> None:
        self._timer = None
        reader = self._protocol.reader
        if reader is None or reader.done():
            return  # nobody waits now: the next wait arms the timer again
        if self._loop.time() >= self._deadline:
            reader.set_exception(TimeoutError())
        else:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        p = self._protocol
        if p.lost or self._transport.is_closing():
            raise httpcore.WriteError("") from p.error
        self._transport.write(buffer)
        if p.writing_paused and not p.lost:
            writer = p.writer = self._loop.create_future()
            try:
                async with asyncio.timeout(timeout):
                    await writer
            except TimeoutError as exc:
                raise httpcore.WriteTimeout(exc) from exc
            finally:
                p.writer = None
        if p.lost and p.error is not None:
            raise httpcore.WriteError("") from p.error

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tcp = self._tcp
        if not tcp.is_closing():
            try:
                tcp.write_eof()
            except OSError:
                pass
            tcp.close()
            await asyncio.sleep(0)
            tcp.abort()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                transport = await self._loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(exc) from exc
        except ssl.SSLError as exc:
            await self.aclose()
            raise httpcore.ConnectError(exc) from exc
        except (OSError, RuntimeError) as exc:  # the peer went away during the handshake
            await self.aclose()
            raise httpcore.ConnectError("") from exc
        except BaseException:
            await self.aclose()
            raise
        self._protocol.transport = transport
        self._protocol.tls = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return _Stream(transport, self._protocol, self._tcp)

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            p = self._protocol
            return bool(p.chunks) or p.eof or p.lost
        return None


class _Backend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await _connect(host, port, local_address)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(exc) from exc
        except OSError as exc:  # as anyio words it: a name that did not resolve, or every address failed
            raise httpcore.ConnectError(exc) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _Stream(transport, protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: typing.Iterable[typing.Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_unix_connection(_Protocol, path)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.ConnectError(exc) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _Stream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_BACKEND = _Backend()


async def _connect(host: str, port: int, local_address: str | None) -> tuple[asyncio.Transport, _Protocol]:
    """TCP connect with happy eyeballs, in anyio's order: the first IPv6 address, the first IPv4 one, then the rest,
    each started 250 ms after the previous unless that one failed sooner; the first to connect wins."""
    loop = asyncio.get_running_loop()
    local = None
    family = socket.AF_UNSPEC
    if local_address:
        family, *_, local = (await loop.getaddrinfo(local_address, 0))[0]
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        found = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        addresses, v6, v4 = [], False, False
        for af, *_, sockaddr in found:
            if af == socket.AF_INET6 and not v6:
                v6 = True
                addresses.insert(0, sockaddr[0])
            elif af == socket.AF_INET and not v4 and v6:
                v4 = True
                addresses.insert(1, sockaddr[0])
            else:
                addresses.append(sockaddr[0])
    errors: list[OSError] = []
    connected: list[tuple[asyncio.Transport, _Protocol]] = []

    async def attempt(address: str, done: asyncio.Event) -> None:
        try:
            connection = await loop.create_connection(_Protocol, address, port, local_addr=local)
        except OSError as exc:
            errors.append(exc)
        else:
            connected.append(connection)
        finally:
            done.set()

    attempts: list[asyncio.Task[None]] = []
    try:
        for address in addresses:
            done = asyncio.Event()
            attempts.append(asyncio.create_task(attempt(address, done)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.25):
                    await done.wait()
            if connected:
                break
        while not connected and not all(task.done() for task in attempts):
            await asyncio.wait([t for t in attempts if not t.done()], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in attempts:
            task.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)
        for transport, _ in connected[1:]:
            transport.close()
    if not connected:
        cause = errors[0] if len(errors) == 1 else ExceptionGroup("multiple connection attempts failed", errors)
        raise OSError("All connection attempts failed") from cause
    return connected[0]


def http_transport(verify: bool) -> httpx.AsyncHTTPTransport:
    """The transport `httpx.AsyncClient(verify=...)` would build, its connection pool on _Backend."""
    context = ssl_context(verify)
    transport = httpx.AsyncHTTPTransport(verify=context, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=context,
        max_connections=POOL_LIMITS.max_connections,
        max_keepalive_connections=POOL_LIMITS.max_keepalive_connections,
        keepalive_expiry=POOL_LIMITS.keepalive_expiry,
        http1=True,
        http2=False,
        retries=0,
        network_backend=_BACKEND,
    )
    return transport
