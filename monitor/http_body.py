"""A response's body, read once h11 has parsed the head: the HTTP/1.1 framing undone in one pass a read.

Through httpcore, the body of an event stream took five async generators and an h11 event per chunk for every read,
about half of a probe's CPU per event. Here the connection's network stream (monitor.network._Stream, which hands the
head's parser nothing past the head) is read directly and the framing is undone as h11 would: chunked (RFC 9112 7.1),
Content-Length, or until the close. What h11 (under httpcore, under httpx) would raise, this raises, as the same httpx
exceptions with the same words, so a probe's reasons do not change.
"""

from __future__ import annotations

import re
import typing

import httpcore
import httpx

from .network import PIECE_BYTES, _Stream

_CHUNK_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*\r\n")  # h11's chunk header (its _abnf)
_BLANK_LINE = re.compile(b"\n\r?\n")
MAX_LINE_BYTES = 100 * 1024  # a chunk size line or trailer section longer than this is refused (h11's limit, as
# httpcore sets it: MAX_INCOMPLETE_EVENT_SIZE)
_INCOMPLETE = "peer closed connection without sending complete message body"


class Body:
    """The body of one response. `read()` returns the payload that each read of the connection brought (the stream's
    `arrival` says when), b"" once the body is complete."""

    def __init__(self, status_code: int, headers: list[tuple[bytes, bytes]], stream: _Stream,
                 timeout: float | None) -> None:
        """`headers`: the response's, names in lower case, as h11 parsed (and checked) them."""
        self._stream = stream
        self._timeout = timeout
        self.ended = False
        framing = {name: value for name, value in headers if name in (b"transfer-encoding", b"content-length")}
        self._chunked = b"transfer-encoding" in framing  # h11 accepts no other transfer coding
        self._left = 0  # payload bytes still to come: of this chunk, or of the Content-Length
        self._length: int | None = None
        if status_code in (204, 304):
            self._length = 0
        elif not self._chunked and b"content-length" in framing:
            self._length = int(framing[b"content-length"])
        if self._length is not None:
            self._left = self._length
            self.ended = self._length == 0
        self._line = b""  # the start of a chunk size line or of the trailer section, when a read ended inside it
        self._footer = b""  # the CRLF after a chunk's data still to be read
        self._trailer = False  # the last chunk was read: the trailer section (usually empty) follows
        self._error: httpx.RemoteProtocolError | None = None  # found after payload that was handed over first

    async def read(self) -> bytes:
        if self._error is not None:
            raise self._error
        while not self.ended:
            try:
                data = await self._stream.read(PIECE_BYTES, self._timeout)
            except httpcore.ReadTimeout as exc:
                raise httpx.ReadTimeout(str(exc)) from exc
            except httpcore.ReadError as exc:
                raise httpx.ReadError(str(exc)) from exc
            if not data:
                self._at_close()
                return b""
            if data := self._unframe(data):
                return data
        return b""

    async def pump(self, on_payload: typing.Callable[[bytes], bool]) -> bool:
        """Push each read's payload to `on_payload` as it arrives (network._Stream.pump: from the loop's reader
        callback, no task woken per piece) until it returns True (then True) or the body is complete (False)."""
        stopped = False

        def consume(data: bytes) -> bool:
            nonlocal stopped
            if not data:
                self._at_close()
                return True
            payload = self._unframe(data)
            if payload and on_payload(payload):
                stopped = True
                return True
            if self._error is not None:  # found after the payload: it was handed over first
                raise self._error
            return self.ended

        if self._error is not None:
            raise self._error
        if self.ended:
            return False
        try:
            await self._stream.pump(consume, self._timeout)
        except httpcore.ReadTimeout as exc:
            raise httpx.ReadTimeout(str(exc)) from exc
        except httpcore.ReadError as exc:
            raise httpx.ReadError(str(exc)) from exc
        return stopped

    def _unframe(self, data: bytes) -> bytes:
        if self._chunked:
            return self._unchunk(data)
        if self._length is not None:
            return self._counted(data)
        return data

    def _at_close(self) -> None:
        if self._chunked:
            raise httpx.RemoteProtocolError(f"{_INCOMPLETE} (incomplete chunked read)")
        if self._length is not None:
            raise httpx.RemoteProtocolError(f"{_INCOMPLETE} (received {self._length - self._left} bytes, "
                                            f"expected {self._length})")
        self.ended = True  # no framing: the close is the end

    def _counted(self, data: bytes) -> bytes:
        if len(data) >= self._left:
            data, self._left, self.ended = data[:self._left], 0, True
        else:
            self._left -= len(data)
        return data

    def _unchunk(self, data: bytes) -> bytes:
        """The payload in this read's bytes; the state carries over to the next read. A framing error raises, after
        the payload before it was handed over (as h11 hands over each chunk before it looks at the next)."""
        out: list[bytes] = []
        try:
            self._unchunk_into(data, out)
        except httpx.RemoteProtocolError as exc:
            if not out:
                raise
            self._error = exc
        return out[0] if len(out) == 1 else b"".join(out)

    def _unchunk_into(self, data: bytes, out: list[bytes]) -> None:
        if self._line:
            data, self._line = self._line + data, b""
        pos, size = 0, len(data)
        while pos < size and not self.ended:
            if self._left:  # inside a chunk's data
                end = min(size, pos + self._left)
                out.append(data[pos:end])
                self._left -= end - pos
                pos = end
                if not self._left:
                    self._footer = b"\r\n"
            elif self._footer:
                got = data[pos:pos + len(self._footer)]
                if got != self._footer[:len(got)]:
                    raise httpx.RemoteProtocolError(f"malformed chunk footer: {bytearray(got)!r} (expected {self._footer!r})")
                self._footer = self._footer[len(got):]
                pos += len(got)
            elif self._trailer:
                pos = self._trailer_section(data, pos)
            else:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    self._keep_line(data[pos:])
                    break
                line = data[pos:eol + 2]
                match = _CHUNK_SIZE_LINE.fullmatch(line)
                if match is None:
                    raise httpx.RemoteProtocolError(f"illegal chunk header: {bytearray(line)!r}")
                self._left = int(match[1], 16)
                self._trailer = not self._left
                pos = eol + 2

    def _trailer_section(self, data: bytes, pos: int) -> int:
        """After the last chunk: trailer fields up to a blank line (h11 reads and drops them), then the end."""
        rest = data[pos:]
        if rest.startswith((b"\r\n", b"\n")):
            self.ended = True
            return len(data)
        if _BLANK_LINE.search(rest) is not None:
            self.ended = True
            return len(data)
        self._keep_line(rest)
        return len(data)

    def _keep_line(self, start: bytes) -> None:
        if len(start) > MAX_LINE_BYTES:
            raise httpx.RemoteProtocolError("Receive buffer too long")
        self._line = start
