"""The probe's httpx transport: one HTTP/1.1 request on a connection of its own, over monitor.network's sockets.

httpx builds the request (URL, headers, body) and is the API the probe calls; this is the transport beneath it, as
`httpx.AsyncHTTPTransport` would be with one connection, no keep-alive, no proxy and HTTP/2 off, without a connection
pool's machinery (its locks, cancel scopes and per-request objects cost about half a millisecond of CPU a probe). h11
writes the request and parses the response head, with httpcore's settings and httpcore's words for what goes wrong;
the body is read by monitor.http_body. The request's `trace` extension hears what httpcore's would:
connection.connect_tcp.started/complete, connection.start_tls.complete, http11.send_request_headers.complete.
"""

from __future__ import annotations

import typing

import h11
import httpcore
import httpx

from .http_body import Body
from .network import _BACKEND, MAX_HEAD_BYTES, _Stream, ssl_context

READ_BYTES = 64 * 1024  # one read of the response head (httpcore's READ_NUM_BYTES)

Trace = typing.Callable[[str, dict], typing.Awaitable[None]]

_MAPPED: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (  # httpcore's exceptions as httpx maps them
    (httpcore.ConnectTimeout, httpx.ConnectTimeout), (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout), (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError), (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError), (h11.RemoteProtocolError, httpx.RemoteProtocolError),
    (h11.LocalProtocolError, httpx.LocalProtocolError),
)


def _httpx_error(exc: Exception) -> httpx.HTTPError | None:
    for theirs, ours in _MAPPED:
        if isinstance(exc, theirs):
            return ours(str(exc))
    return None


async def _no_trace(name: str, info: dict) -> None:
    pass


class ResponseBody(httpx.AsyncByteStream):
    """The response's body (http_body.Body): pushed as it arrives (`pump`), pulled a read's payload at a time
    (`read()`), or iterated as httpx streams are. Closing it closes the connection."""

    def __init__(self, body: Body, stream: _Stream) -> None:
        self._body = body
        self._stream = stream

    async def read(self) -> bytes:
        return await self._body.read()

    async def pump(self, on_payload: typing.Callable[[bytes], bool]) -> bool:
        return await self._body.pump(on_payload)

    async def __aiter__(self) -> typing.AsyncIterator[bytes]:
        while piece := await self._body.read():
            yield piece

    async def aclose(self) -> None:
        await self._stream.aclose()


class ProbeTransport(httpx.AsyncBaseTransport):
    """A fresh connection for every request; `verify`: check the server's certificate (the shared SSL context)."""

    def __init__(self, verify: bool = True) -> None:
        self._verify = verify

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        trace: Trace = request.extensions.get("trace") or _no_trace
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url.scheme}://'.")
        stream: _Stream | None = None
        try:
            try:
                stream = await self._connect(url, timeouts.get("connect"), trace)
                return await self._exchange(stream, request, timeouts, trace)
            except BaseException:
                if stream is not None:
                    await stream.aclose()
                raise
        except (httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError, h11.ProtocolError) as exc:
            mapped = _httpx_error(exc)
            if mapped is None:  # pragma: no cover - every kind the network layer raises is mapped
                raise
            raise mapped from exc

    async def _connect(self, url: httpx.URL, timeout: float | None, trace: Trace) -> _Stream:
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        await trace("connection.connect_tcp.started", {"host": host, "port": port})
        stream = await _BACKEND.connect_tcp(host, port, timeout=timeout)
        await trace("connection.connect_tcp.complete", {"return_value": stream})
        if url.scheme == "https":
            await trace("connection.start_tls.started", {})
            stream = await stream.start_tls(ssl_context(self._verify), server_hostname=host, timeout=timeout)
            await trace("connection.start_tls.complete", {"return_value": stream})
        return stream

    async def _exchange(self, stream: _Stream, request: httpx.Request, timeouts: dict, trace: Trace) -> httpx.Response:
        connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        write = timeouts.get("write")
        head = connection.send(h11.Request(method=request.method, target=request.url.raw_path,
                                           headers=request.headers.raw))
        await stream.write(head, timeout=write)
        await trace("http11.send_request_headers.complete", {})
        async for chunk in request.stream:  # type: ignore[union-attr]  # httpx.Request's stream is async here
            await stream.write(connection.send(h11.Data(data=chunk)), timeout=write)
        await stream.write(connection.send(h11.EndOfMessage()), timeout=write)
        response = await _response_head(connection, stream, timeouts.get("read"))
        body = Body(response.status_code, list(response.headers), stream, timeouts.get("read"))
        return httpx.Response(
            response.status_code, headers=response.headers.raw_items(), stream=ResponseBody(body, stream),
            extensions={"http_version": b"HTTP/" + response.http_version, "reason_phrase": response.reason,
                        "network_stream": stream})


async def _response_head(connection: h11.Connection, stream: _Stream, timeout: float | None) -> h11.Response:
    """The final response's head (interim 1xx heads are passed over), as httpcore reads it."""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await stream.read(READ_BYTES, timeout)
            if not data and connection.their_state is h11.SEND_RESPONSE:
                raise httpcore.RemoteProtocolError("Server disconnected without sending a response.")
            connection.receive_data(data)
        elif isinstance(event, h11.Response):
            return event
