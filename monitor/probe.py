"""One probe of one streaming endpoint: spec in, ProbeResult out. Never raises (except on cancellation)."""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
import zlib
from collections.abc import Callable, Iterator

import httpcore  # noqa: F401 - imported here, not lazily inside the first timed request
import httpx

try:  # what httpcore's pool loads (anyio's asyncio backend, for its locks) must not count as connect time
    import anyio._backends._asyncio  # noqa: F401
except ImportError:  # pragma: no cover - only a warm-up
    pass

from .dialects import Dialect, Usage, known_sum, make_dialect
from . import network
from .transport import ProbeTransport
from .redact import redact_url, scrub, secret_values
from .result import (
    CLOCK_KERNEL,
    CLOCK_USER,
    COMPLETED,
    ENDED_EARLY,
    FAILED,
    STREAMING_HEADERS,
    USAGE_KINDS,
    WARNING_BUFFERING,
    WARNING_CONTENT_ENCODING,
    WARNING_CONTENT_LENGTH,
    WARNING_CONTENT_TYPE,
    WARNING_EVENT_LOOP_LAG,
    WARNING_THROTTLED,
    ProbeResult,
    ProbeSpec,
    ResumeResult,
    alert_conditions,
)
from .resume import ResumeCheck, _compare_ids, resume_request  # noqa: F401 - _compare_ids: tests/test_resume.py
from .server_timing import SERVER_TIMING, read_server_report
from .sse import Comment, EventTooLarge, SSEDecoder

MAX_TOKEN_TIMES = 100_000  # token arrival times kept per probe (gaps beyond this are still folded into max_gap)
MAX_TRACE = 100_000  # trace entries kept per probe with --trace
MAX_ERROR_BODY = 4096  # bytes of a non-2xx body read for the error detail
INFLATE_PIECE = 64 * 1024  # a compressed stream is inflated in pieces of at most this size (gzip bombs)
READ_COALESCE_SECONDS = 0.001  # body pieces arriving closer than this count as one network read
BULK_READ_TOKENS = 4  # a read carrying this many token events or more is a burst
BUFFERING_SHARE = 0.75  # share of token events arriving in bursts that makes buffering suspected
BUFFERING_MIN_SECONDS = 0.5  # streams shorter than this cannot be told from a fast origin


class _Inflater:
    """Content-Encoding decoding in bounded pieces, so a gzip bomb cannot grow memory."""

    def __init__(self, encoding: str) -> None:
        wbits = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}[encoding]
        self._z = zlib.decompressobj(wbits)

    def pieces(self, data: bytes) -> Iterator[bytes]:
        out = self._z.decompress(data, INFLATE_PIECE)
        yield out
        while self._z.unconsumed_tail:
            yield self._z.decompress(self._z.unconsumed_tail, INFLATE_PIECE)


class _Ended(Exception):
    """The probe concluded with a failure found while reading; carries the outcome."""

    def __init__(self, outcome: str, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome, self.reason, self.detail = outcome, reason, detail


class StreamRecorder:
    """Times and classifies what arrives: response headers, body pieces, events, comments.

    Every arrival time is the kernel's receive stamp of the read that carried it (network.Arrival), measured from
    the moment the request's first bytes were handed to the kernel; where a read has no stamp, the moment the process
    read it (the user clock). Internally every moment is on perf_counter; stamps (CLOCK_REALTIME) are converted with
    one offset taken at the start.
    """

    def __init__(self, spec: ProbeSpec, dialect: Dialect, result: ProbeResult) -> None:
        self.spec, self.dialect, self.result = spec, dialect, result
        self.started = time.perf_counter()  # set again by start(), the moment the request goes out
        self._offset = time.time() - self.started  # CLOCK_REALTIME minus perf_counter: turns stamps into moments
        self.stream: network._Stream | None = None  # the connection's network stream, once connected
        self._user_times = 0  # arrivals timed on the user clock (no kernel stamp)
        self._connect_started: float | None = None
        self._connected: float | None = None
        self.decoder = SSEDecoder(spec.max_event_bytes)
        self.inflater: _Inflater | None = None
        self.concluded = False
        self._last_byte = 0.0
        self._last_token: float | None = None
        self._last_read = -1.0
        self._read_tokens = 0
        self._burst_tokens = 0
        self._event_stream = True
        self._content_type = "missing"  # this part's response Content-Type, for a detail
        # the resumption check (spec.resume): part 1 is the first connection, part 2 the reconnect
        self.resume = ResumeCheck(spec.resume, result.resume) if result.resume is not None else None
        self.part = 1
        self.got_headers = False  # this part's response headers arrived
        self._part_items = 0  # events and comments of this part
        self._usage: list[Usage] = []  # per part (the reconnect is a request of its own): what the stream reported
        self._throttled = False  # an earlier part's connection was throttled
        self._unstamped = False  # an earlier part's connection had no kernel stamps

    def start(self, at: tuple[float, float] | None = None) -> None:
        """The request starts now (or at `at`, a (time.time(), perf_counter()) pair): the instant every time in the
        result is measured from. Called before anything is sent, then again with the moment the request's first
        bytes went to the kernel, so neither our own set-up nor the connection's counts."""
        wall, self.started = at or (time.time(), time.perf_counter())
        self.result.started_at = wall

    def now(self) -> float:
        """The process's own clock: for timers (timeouts) and moments that no arrival carries."""
        return time.perf_counter() - self.started

    def arrived(self) -> float:
        """When the bytes the connection handed over last arrived: the kernel's stamp if it has one."""
        return self._arrival() - self.started

    def _arrival(self) -> float:
        arrival = self.stream.arrival if self.stream is not None else None
        if arrival is None:
            self._user_times += 1
            return time.perf_counter()
        if arrival.stamp is not None:
            return arrival.stamp - self._offset
        self._user_times += 1
        return arrival.read_at

    def conclude(self, outcome: str, reason: str, detail: str = "", at: float | None = None) -> None:
        if not self.concluded:
            self.concluded = True
            r = self.result
            r.outcome, r.reason, r.detail = outcome, reason, detail
            r.duration_seconds = now = self.now() if at is None else at
            if self.got_headers:  # the silence before the end counts too (e.g. an idle timeout)
                self._silence_until(now)

    async def on_trace(self, name: str, info: dict) -> None:
        first = self.part == 1  # the reconnect's connect and TLS times are not the probe's
        if name == "connection.connect_tcp.started":
            self._connect_started = time.perf_counter()
        elif name == "connection.connect_tcp.complete":
            self._connected = time.perf_counter()  # no bytes arrive with a connect: the user clock
            if first:
                self.result.connect_seconds = self._connected - self._connect_started
            self.stream = info.get("return_value")
        elif name == "connection.start_tls.complete":
            self.stream = info.get("return_value") or self.stream
            if self._connected is not None and first:  # until the server's last handshake message
                self.result.tls_seconds = self._arrival() - self._connected
        elif name == "http11.send_request_headers.complete" and self.stream is not None and self.stream.sent_at:
            if first:
                self.start(self.stream.sent_at)
            else:  # the reconnect's request went out: its silence and its first token count from here
                self.resume.result.reconnect_seconds = self._last_byte = self.stream.sent_at[1] - self.started

    def reconnect(self) -> None:
        """Part 1 was dropped after spec.resume.after_events token events: what follows is the reconnect's, on a new
        connection and with a new decoder (the ids it sends are its own), on the same time axis."""
        self._close_read()
        if self.stream is not None:
            self._throttled = self._throttled or self.stream.throttled
            self._unstamped = self._unstamped or not self.stream.kernel_stamps
        self.stream = None
        self.part = 2
        self.got_headers = False
        self._part_items = 0
        self.decoder = SSEDecoder(self.spec.max_event_bytes)
        self.inflater = None
        self._event_stream = True
        self._last_token = None  # the gap across our own drop is not the stream's (ResumeResult.ttft_seconds is)
        now = self.now()
        self._last_byte = self.resume.result.reconnect_seconds = now
        self._trace(now, "reconnect", "reconnect", self.resume.result.last_id, self.resume.sent_as())

    def on_headers(self, response: httpx.Response) -> None:
        r = self.result
        now = self.arrived()
        self._silence_until(now)  # a proxy's idle timer runs from the request: waiting for headers is silence too
        self._last_byte = now
        self.got_headers = True
        r.status_code = response.status_code  # the last response's: after a reconnect, the reconnect's
        r.http_version = response.http_version
        headers = dict(response.headers.items())  # lower-case names; a plain dict is ~10x quicker to look up
        if self.part == 1:
            r.headers_seconds = now
            r.response_headers = {k: headers[k] for k in STREAMING_HEADERS if k in headers}
            self._server_report(response.headers, headers, now)
        else:
            self.resume.result.status_code = response.status_code
            if not 200 <= response.status_code < 300:
                return  # a refused reconnect (its error body) says nothing about the stream's path
        content_type = headers.get("content-type", "")
        self._content_type = headers.get("content-type", "missing")
        self._event_stream = content_type.split(";")[0].strip().lower() == "text/event-stream"
        if not self._event_stream:
            self._warn(WARNING_CONTENT_TYPE)
        if "content-length" in headers:
            self._warn(WARNING_CONTENT_LENGTH)
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            self._warn(WARNING_CONTENT_ENCODING)
            try:
                self.inflater = _Inflater(encoding)
            except KeyError:
                raise _Ended(FAILED, "not_event_stream", f"cannot decode Content-Encoding {encoding!r}") from None

    def on_body(self, raw: bytes) -> bool:
        """One piece of the body as it arrived. Returns True when the stream reached its end (proper or error)."""
        now = self.arrived()
        r = self.result
        if r.first_byte_seconds is None:
            r.first_byte_seconds = now
        self._silence_until(now)
        self._last_byte = now
        r.bytes += len(raw)
        if r.bytes > self.spec.max_stream_bytes:
            raise _Ended(FAILED, "too_many_bytes", f"the stream exceeded max_stream_bytes "
                         f"({_size(self.spec.max_stream_bytes)}) after {now:.3f} s: it was still sending")
        if now - self._last_read > READ_COALESCE_SECONDS:
            self._close_read()
            r.reads += 1
        self._last_read = now
        pieces = self.inflater.pieces(raw) if self.inflater else (raw,)
        try:
            for piece in pieces:
                for item in self.decoder.feed(piece):
                    if self._on_item(item, now):
                        return True
        except zlib.error as exc:
            raise _Ended(FAILED, "not_event_stream", f"the compressed body cannot be decoded: {exc}") from None
        return False

    def on_eof(self) -> None:
        """The body ended cleanly (no reset, complete chunked encoding). A FIN carries no kernel stamp: the end is
        when the process saw it."""
        arrival = self.stream.arrival if self.stream is not None else None
        at = None if arrival is None else arrival.read_at - self.started
        unfinished = self.decoder.close()
        if self._part_items == 0 and not self._event_stream:
            content_type = self._content_type
            self.conclude(FAILED, "not_event_stream", f"the body is not an event stream (Content-Type {content_type!r})", at)
        elif unfinished:
            self.conclude(ENDED_EARLY, "no_terminal_event", "the stream ended in the middle of an event", at)
        elif self.dialect.ends_on_eof:
            self.conclude(COMPLETED, "ok", at=at)
        else:
            self.conclude(ENDED_EARLY, "no_terminal_event", "the stream ended cleanly before the dialect's terminal event", at)

    def finish(self) -> None:
        """Checks that need the whole stream: expected minimums, buffering, alerts."""
        self._close_read()
        r, spec = self.result, self.spec
        if self.resume is not None and (warning := self.resume.finish(r, self.part, self._part_items)):
            self._warn(warning)
        self._finish_usage()
        if r.outcome == COMPLETED:
            if spec.min_duration is not None and r.duration_seconds < spec.min_duration:
                r.outcome, r.reason = ENDED_EARLY, "too_short"
                r.detail = f"the stream lasted {r.duration_seconds:.3f} s, expected at least {spec.min_duration:g} s"
            elif spec.min_events is not None and r.token_events < spec.min_events:
                r.outcome, r.reason = ENDED_EARLY, "too_few_events"
                r.detail = f"the stream carried {r.token_events} token events, expected at least {spec.min_events}"
        stream = self.stream
        if (stream is not None and stream.throttled) or self._throttled:
            r.warnings.append(WARNING_THROTTLED)  # its bursts are our own pauses, not a proxy's buffering
        elif self._buffering_suspected():
            r.warnings.append(WARNING_BUFFERING)
        stamped = stream.kernel_stamps if stream is not None else network.KERNEL_TIMESTAMPS
        r.clock = CLOCK_KERNEL if stamped and not self._unstamped and not self._user_times else CLOCK_USER
        if r.clock == CLOCK_KERNEL and r.ttft_seconds is not None and network.read_blind_at(self.started + r.ttft_seconds):
            r.warnings.append(WARNING_EVENT_LOOP_LAG)  # the first token may carry a later segment's stamp
        r.alerts = alert_conditions(r)

    # -- internals ------------------------------------------------------------------------------------------------

    def _warn(self, warning: str) -> None:
        if warning not in self.result.warnings:  # a reconnect's response may repeat the first one's
            self.result.warnings.append(warning)

    def _server_report(self, response_headers: httpx.Headers, headers: dict[str, str], now: float) -> None:
        """The server's timing headers and request id; a malformed one is ignored, with a warning in the trace."""
        report = read_server_report(headers, response_headers.get_list(SERVER_TIMING) if SERVER_TIMING in headers
                                    else [])
        self.result.server_timing, self.result.request_id = report.timing, report.request_id
        for ignored in report.ignored:
            self._trace(now, "warning", "server_timing", None, f"ignored {ignored}")

    def _silence_until(self, now: float) -> None:
        silence = now - self._last_byte
        if self.result.max_silence_seconds is None or silence > self.result.max_silence_seconds:
            self.result.max_silence_seconds = silence

    def _on_item(self, item, now: float) -> bool:
        r = self.result
        if r.events + r.comments >= self.spec.max_events:
            raise _Ended(FAILED, "too_many_events", f"the stream exceeded max_events ({self.spec.max_events:,}) "
                         f"after {now:.3f} s: it was still sending")
        self._part_items += 1
        if isinstance(item, Comment):
            r.comments += 1
            if len(r.comment_times) < MAX_TOKEN_TIMES:
                r.comment_times.append(now)
            self._trace(now, "comment", None, None, item.text)
            return False
        r.events += 1
        if r.first_event_seconds is None:
            r.first_event_seconds = now
        verdict = self.dialect.classify(item)
        self._trace(now, "event", item.type, item.id, item.data)
        resume = self.resume
        if resume is not None and item.id:  # the stream's last event id (it persists over events without an id:)
            resume.on_id(item.id, self.part)
        if verdict.usage is not None:
            self._on_usage(verdict.usage)
        if verdict.token:
            self._on_token(now)
            if not verdict.reasoning and r.first_text_seconds is None:
                r.first_text_seconds = now
        if verdict.error is not None:
            self.conclude(ENDED_EARLY, "error_event", f"error event: {verdict.error}", now)
            return True
        if verdict.end:
            self.conclude(COMPLETED, "ok", at=now)
            return True
        if verdict.token and self.part == 1 and resume is not None and resume.is_drop_point(r.token_events):
            return resume.drop(item.id, r.token_events)
        return False

    def _on_usage(self, usage: Usage) -> None:
        """A later report of this part's counts replaces each count it gives (the APIs send running totals)."""
        while len(self._usage) < self.part:
            self._usage.append(Usage())
        known = self._usage[self.part - 1]
        self._usage[self.part - 1] = Usage(*(new if new is not None else old for new, old in zip(usage, known)))

    def _finish_usage(self) -> None:
        """The run's token counts, the reconnect's added to the first request's, and their cost."""
        if not self._usage:
            return
        r = self.result
        r.usage = {key: known_sum(*(getattr(u, key) for u in self._usage))
                   for key in (f"{kind}_tokens" for kind in USAGE_KINDS)}
        if self.spec.price is not None:
            r.cost = self.spec.price.cost(r.usage)

    def _on_token(self, now: float) -> None:
        r = self.result
        r.token_events += 1
        self._read_tokens += 1
        if self.part == 2:
            self.resume.on_reconnect_token(now)
        if r.ttft_seconds is None:
            r.ttft_seconds = now
        elif self._last_token is not None:
            gap = now - self._last_token
            if r.max_gap_seconds is None or gap > r.max_gap_seconds:
                r.max_gap_seconds = gap
        self._last_token = now
        if len(r.token_times) < MAX_TOKEN_TIMES:
            r.token_times.append(now)

    def _close_read(self) -> None:
        if self._read_tokens >= BULK_READ_TOKENS:
            self._burst_tokens += self._read_tokens
        self._read_tokens = 0

    def _buffering_suspected(self) -> bool:
        """Most token events landed in a few large bursts, on a stream long enough for that to matter.

        The stream lasts from the request, not from the response headers: a buffering proxy may hold the headers
        back with the body (nginx sends them with its first full buffer), so they come no earlier than the burst.
        """
        r = self.result
        if r.token_events < BULK_READ_TOKENS or self._last_token is None or r.headers_seconds is None:
            return False
        lasted = self._last_token
        return lasted >= BUFFERING_MIN_SECONDS and self._burst_tokens >= BUFFERING_SHARE * r.token_events

    def _trace(self, now: float, kind: str, event_type: str | None, event_id: str | None, data: str) -> None:
        trace = self.result.trace
        if trace is not None and len(trace) < MAX_TRACE:
            trace.append({"t": round(now, 6), "kind": kind, "type": event_type, "id": event_id, "data": data})


async def run_probe(spec: ProbeSpec, on_progress: Callable[[ProbeResult], None] | None = None) -> ProbeResult:
    """Probe one endpoint once, on a fresh connection, and say what a user would have seen. `on_progress`, if given,
    sees the result so far after every piece of the body (for a live display; it must be quick and never raise)."""
    result = ProbeResult(url=redact_url(spec.url), dialect=spec.dialect, ttft_threshold=spec.ttft_threshold)
    if spec.trace:
        result.trace = []
    if spec.resume is not None:
        result.resume = ResumeResult()
    result.started_at = time.time()
    recorder: StreamRecorder | None = None
    secrets: list[str] = []
    try:
        dialect = make_dialect(spec)
        request = dialect.build_request()
        secrets = secret_values(request.headers, request.url)
        result.url = redact_url(request.url)
        recorder = StreamRecorder(spec, dialect, result)
        async with asyncio.timeout(spec.timeout) as deadline:  # one timeout for the whole probe, reconnect included
            await _exchange(spec, request, recorder, deadline, on_progress)
            if recorder.resume is not None and recorder.resume.cut:
                recorder.reconnect()
                await _exchange(spec, resume_request(request, spec.resume, result.resume.last_id), recorder,
                                deadline, on_progress)
    except TimeoutError:
        _conclude(recorder, result, FAILED, "timeout", f"the stream did not end within the probe timeout of {spec.timeout:g} s")
    except _Ended as ended:
        _conclude(recorder, result, ended.outcome, ended.reason, ended.detail)
    except EventTooLarge as exc:
        _conclude(recorder, result, FAILED, "event_too_large", str(exc))
    except httpx.HTTPError as exc:
        got_headers = recorder.got_headers if recorder is not None else result.headers_seconds is not None
        outcome, reason, detail = _classify_transport_error(exc, spec, got_headers)
        _conclude(recorder, result, outcome, reason, detail)
    except httpx.InvalidURL as exc:
        _conclude(recorder, result, FAILED, "connect_error", f"cannot use this URL: {exc}")
    except Exception as exc:  # a bug of ours must still become a result
        _conclude(recorder, result, FAILED, "internal_error", f"{type(exc).__name__}: {exc}")
    if recorder is not None:
        recorder.finish()
    else:
        result.alerts = alert_conditions(result)
    result.detail = scrub(result.detail, secrets)
    return result


def _size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n:,} bytes"


def _conclude(recorder: StreamRecorder | None, result: ProbeResult, outcome: str, reason: str, detail: str) -> None:
    if recorder is not None:
        recorder.conclude(outcome, reason, detail)
    else:
        result.outcome, result.reason, result.detail = outcome, reason, detail


@functools.cache
def _client_headers() -> httpx.Headers:
    """The headers an httpx client adds to every request (Accept, Accept-Encoding, Connection, User-Agent), taken from
    httpx itself once: a probe sends exactly what `httpx.AsyncClient` would."""
    return httpx.AsyncClient(transport=httpx.AsyncBaseTransport(), trust_env=False).headers


@functools.lru_cache(maxsize=4096)
def _url(url: str) -> httpx.URL:
    """A target's URL, parsed once (httpx.URL is immutable; parsing it cost ~40 us a probe)."""
    return httpx.URL(url)


async def _exchange(spec: ProbeSpec, request, recorder: StreamRecorder, deadline: asyncio.Timeout,
                    on_progress: Callable[[ProbeResult], None] | None = None) -> None:
    """One request on a connection of its own (ProbeTransport). The transport is used directly, as a client would use
    it with follow_redirects off and no cookie jar: a client's set-up and its layers cost ~0.2 ms of CPU a probe."""
    headers = httpx.Headers(_client_headers())
    headers.update(request.headers)
    http_request = httpx.Request(request.method, _url(request.url), headers=headers, content=request.content,
                                 extensions={"trace": recorder.on_trace,
                                             "timeout": httpx.Timeout(spec.idle_timeout).as_dict()})
    async with ProbeTransport(spec.verify_tls) as transport:
        if recorder.part == 1:  # a reconnect stays on the first request's time axis and within its timeout
            recorder.start()
            deadline.reschedule(asyncio.get_running_loop().time() + spec.timeout)
        response = await transport.handle_async_request(http_request)
        try:
            recorder.on_headers(response)
            if not 200 <= response.status_code < 300:
                body = await _read_some(response)
                recorder.conclude(FAILED, "http_status", f"HTTP {response.status_code}: {body}".rstrip(": "))
                return
            def on_piece(chunk: bytes) -> bool:  # called as each piece arrives (the body is pushed)
                if recorder.on_body(chunk):
                    return True
                if on_progress is not None:
                    on_progress(recorder.result)
                return False

            if not await response.stream.pump(on_piece):
                recorder.on_eof()
        finally:
            await response.aclose()
            # The response and its stream refer to each other: left so, everything the probe touched (connection,
            # recorder, ~140 objects) waits for the garbage collector. Dropping the closed stream frees it now.
            response.stream = httpx.ByteStream(b"")


async def _read_some(response: httpx.Response) -> str:
    """The start of an error body, for the detail; bounded, and never fails the probe."""
    data = b""
    try:
        async for chunk in response.aiter_raw():
            data += chunk
            if len(data) >= MAX_ERROR_BODY:
                break
    except httpx.HTTPError:
        pass
    return data[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()[:300]


def _is_tls_error(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ssl.SSLError | ssl.CertificateError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _classify_transport_error(exc: httpx.HTTPError, spec: ProbeSpec, got_headers: bool) -> tuple[str, str, str]:
    """httpx's exception tree, mapped once onto outcomes and reasons.

    TransportError -> TimeoutException -> Connect/Read/Write/PoolTimeout
                   -> NetworkError -> Connect/Read/Write/CloseError
                   -> ProtocolError -> Local/RemoteProtocolError
                   -> UnsupportedProtocol, ProxyError
    """
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ReadTimeout):
        if got_headers:
            return ENDED_EARLY, "idle_timeout", f"no byte for {spec.idle_timeout:g} s (the idle timeout)"
        return FAILED, "timeout", f"no response headers within {spec.idle_timeout:g} s"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        if _is_tls_error(exc):
            return FAILED, "tls_error", f"TLS handshake failed: {text}"
        return FAILED, "connect_error", f"cannot connect: {text}"
    if isinstance(exc, httpx.TimeoutException):
        return FAILED, "timeout", f"timed out: {text}"
    if got_headers and isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return ENDED_EARLY, "connection_lost", f"the connection was lost mid-stream: {text}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return FAILED, "protocol_error", f"the server did not answer with valid HTTP: {text}"
    if isinstance(exc, httpx.NetworkError):
        return FAILED, "connect_error", f"the connection failed before the response: {text}"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return FAILED, "connect_error", f"cannot use this URL: {text}"
    return FAILED, "internal_error", f"{type(exc).__name__}: {text}"
