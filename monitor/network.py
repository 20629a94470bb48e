"""The network under httpx for probes: sockets read with the kernel's receive timestamps, fairly.

httpx stays the client API; this module is the network beneath the probe's transport (monitor.transport), with
httpcore's network-backend interface. Each connection owns a non-blocking socket that the event loop's reader callback
drains with `recvmsg`, so every piece of bytes carries the kernel's software receive timestamp of the segment that
delivered it (`SO_TIMESTAMPING`, Linux). A probe's times are those stamps, not the moment Python got around to
reading: a late event loop no longer shows up as a slow endpoint.
TLS runs on `ssl.SSLObject` over memory BIOs on the same socket, so the stamp is the ciphertext's arrival, which is
what a user's client sees.

One limit of the kernel, measured: segments that queue up while nobody reads are merged into one buffer that keeps
only the newest segment's stamp (tcp_try_coalesce), so reading them back in smaller pieces does not recover the older
stamps (tried: 10 segments 10 ms apart, read 300 ms later in 60-byte pieces: every piece carried the last segment's
stamp). The stamps are exact while the loop reads each socket before its next segment arrives; for an LLM stream
(tens of milliseconds between chunks) that is a loop late by less than that gap. Fair reading below keeps it so.

The body is pushed (`_Stream.pump`): the reader callback hands each piece to the probe's consumer as it arrives, with
no task woken and no future made per piece; the response head is pulled (`_Stream.read`, for h11), and a read never
hands over a byte past the head's end.

Fair reading: a stream whose bytes keep arriving faster than they are processed (a flood) would keep the event loop
busy and delay every other target. Each stream measures the time its consumer spends on what it handed over; after
SLICE_SECONDS of work without waiting it yields to the loop, and when its work exceeds FAIR_SHARE of a FAIR_WINDOW it
stops reading its socket for the rest of the window (the kernel's buffer fills and TCP back-pressure slows the sender)
and says so (`throttled`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import math
import os
import platform
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time
import typing
import weakref
from functools import cache

import certifi
import httpcore


@cache
def ssl_context(verify: bool) -> ssl.SSLContext:
    """One SSL context per process and mode: building one costs ~20 ms of CPU."""
    context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])  # as httpcore offers it with HTTP/2 off
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# -- kernel receive timestamps -----------------------------------------------------------------------------------------

# Python 3.11 lacks the constants; these are the generic values (x86-64, arm64, and the other architectures whose
# asm/socket.h takes them from asm-generic): SO_TIMESTAMPING(_OLD) = 37, with 64-bit time fields on 64-bit builds.
SO_TIMESTAMPING = 37
SOF_TIMESTAMPING_RX_SOFTWARE = 1 << 3
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
_STAMP = struct.Struct("=qq")  # the first of scm_timestamping's three timespecs: the software stamp
_ANCILLARY_BYTES = socket.CMSG_SPACE(3 * _STAMP.size) if hasattr(socket, "CMSG_SPACE") else 0


def _kernel_stamps_possible() -> bool:
    if os.environ.get("SSE_MONITOR_KERNEL_TIMESTAMPS", "").strip().lower() in ("0", "off", "false", "no"):
        return False  # forced off: every time is read on the process's own clock
    return (
        sys.platform == "linux"
        and struct.calcsize("P") == 8
        and platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64", "riscv64", "s390x", "ppc64le")
        and _ANCILLARY_BYTES > 0
    )


KERNEL_TIMESTAMPS = _kernel_stamps_possible()  # tests may switch it off; new connections follow it


_STAMPING = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE
_STAMPS_KEPT_ON: list[socket.socket] = []


def _enable_stamps(sock: socket.socket) -> bool:
    if not KERNEL_TIMESTAMPS or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        if not _STAMPS_KEPT_ON:
            # The kernel enables receive timestamping for the whole stack while any socket wants it and disables it
            # soon after the last such socket closes. Probes made one at a time paid for that each time (the
            # setsockopt averaged 56 us in a profile): one idle socket of our own keeps it enabled.
            holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            holder.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, _STAMPING)
            _STAMPS_KEPT_ON.append(holder)
            _until_stamping(holder)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, _STAMPING)
    except OSError:  # an old kernel, a sandbox that filters the option
        return False
    return True


def _until_stamping(holder: socket.socket, bound: float = 0.05) -> None:
    """Wait (at most `bound`, once per process) until the kernel stamps arrivals. The first socket that asks turns
    stamping on for the whole stack, but the kernel does it later, from a work queue: on a busy machine a response
    head that came first had no stamp, and the process's first probe was timed on the user clock. A datagram sent to
    the holder itself shows when the stamps are there."""
    try:
        holder.bind(("127.0.0.1", 0))
        holder.setblocking(False)
        end = time.perf_counter() + bound
        while True:
            holder.sendto(b".", holder.getsockname())
            with contextlib.suppress(BlockingIOError, InterruptedError):
                _, ancillary, _, _ = holder.recvmsg(1, _ANCILLARY_BYTES)
                if ancillary and _stamp_of(ancillary) is not None:
                    return
            if time.perf_counter() > end:
                return
            time.sleep(0.0005)
    except OSError:  # no loopback to send to: the stamps come when they come
        return


def _stamp_of(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(data) >= _STAMP.size:
            seconds, nanoseconds = _STAMP.unpack_from(data)
            if seconds or nanoseconds:
                return seconds + nanoseconds * 1e-9
    return None


# -- one connection ----------------------------------------------------------------------------------------------------

RECV_BYTES = 64 * 1024  # one recvmsg
READ_AHEAD_BYTES = 256 * 1024  # received but not yet read: past this, reading from the socket pauses
PIECE_BYTES = 16 * 1024  # at most this much is handed over at once, so a slice of work stays short
SLICE_SECONDS = 0.002  # a consumer that worked this long without waiting lets the others run first
FAIR_WINDOW = 0.1
FAIR_SHARE = 0.2  # a stream may keep the loop busy for this share of each window; past it, its reading pauses
MAX_HEAD_BYTES = 100 * 1024  # the longest response head h11 is let take (monitor.transport; httpcore's limit too)
_HEAD_END = re.compile(b"\n\r?\n")  # where h11 (its ReceiveBuffer) finds the blank line that ends a head


class Arrival(typing.NamedTuple):
    """When a piece of bytes arrived: the kernel's stamp (unix seconds, CLOCK_REALTIME) or None, and when the process
    read it (perf_counter)."""

    stamp: float | None
    read_at: float


_BUFFERS = threading.local()


def _buffer() -> memoryview:
    """This thread's receive buffer (the event loop's, or the stall reader's)."""
    buffer = getattr(_BUFFERS, "buffer", None)
    if buffer is None:
        buffer = _BUFFERS.buffer = memoryview(bytearray(RECV_BYTES))
    return buffer


class _Socket:
    """A non-blocking socket drained by the event loop's reader callback; every piece keeps its arrival."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.stamped = _enable_stamps(sock)
        self.chunks: collections.deque[tuple[bytes, Arrival]] = collections.deque()
        self.size = 0
        self.eof = False
        self.error: OSError | None = None
        self.closed = False
        self.waiter: asyncio.Future[None] | None = None
        self.read_at = 0.0  # when the loop last read it (perf_counter): the stall reader reads only what it left
        self.consumer: typing.Callable[[], None] | None = None  # a pumping stream's drain: called instead of waking
        self._reading = False
        self._held = False  # reading paused on purpose (the stream is throttled)
        self._lock = threading.Lock()  # the loop and the stall reader never read the socket at once
        self._stall_reader = _stall_reader(loop)

    # reading

    def start_reading(self) -> None:
        if not self._reading and not self._held and not (self.closed or self.eof or self.error):
            self.loop.add_reader(self.fd, self._on_readable)
            self._reading = True
            self._stall_reader.watch(self)

    def stop_reading(self) -> None:
        if self._reading:
            self.loop.remove_reader(self.fd)
            self._reading = False
            self._stall_reader.forget(self)

    def hold(self, held: bool) -> None:
        self._held = held
        if held:
            self.stop_reading()
        elif self.size <= READ_AHEAD_BYTES:
            self.start_reading()

    def _on_readable(self) -> None:
        if self.size > READ_AHEAD_BYTES:  # the stall reader filled the read-ahead meanwhile
            self.stop_reading()
            return
        with self._lock:
            self._receive()
        self.read_at = time.perf_counter()
        if self.eof or self.error is not None or self.size > READ_AHEAD_BYTES:
            self.stop_reading()
        self._wake()

    def read_while_stalled(self) -> bool:
        """From the stall reader's thread: read what waits, while the loop cannot. True if anything changed."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            changed = False
            while self.size <= READ_AHEAD_BYTES and not (self.closed or self.eof or self.error):
                if not self._receive():
                    break
                changed = True
            return changed
        finally:
            self._lock.release()

    def _receive(self) -> bool:
        """One recvmsg (under the lock): a piece with its arrival, the end, or an error. False when nothing waits.

        Into this thread's one reusable buffer, then copied out at its size: a fresh 64 KiB object per read, shrunk
        afterwards, left the heap fragmented with a thousand streams."""
        if self.closed:
            return False
        buffer = _buffer()
        try:
            if self.stamped:
                size, ancillary, _, _ = self.sock.recvmsg_into((buffer,), _ANCILLARY_BYTES)
                arrival = Arrival(_stamp_of(ancillary) if ancillary else None, time.perf_counter())
            else:
                size = self.sock.recv_into(buffer)
                arrival = Arrival(None, time.perf_counter())
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.error = exc
            return True
        if not size:
            self.eof = True
        else:
            self.chunks.append((buffer[:size].tobytes(), arrival))
            self.size += size
        return True

    def take(self, max_bytes: int) -> tuple[bytes, Arrival]:
        """The oldest piece (at most max_bytes of it) and its arrival. Pieces from different reads are never merged:
        each keeps its own stamp."""
        with self._lock:
            data, arrival = self.chunks.popleft()
            if len(data) > max_bytes:
                self.chunks.appendleft((data[max_bytes:], arrival))
                data = data[:max_bytes]
            self.size -= len(data)
        if not self._reading and self.size <= READ_AHEAD_BYTES:
            self.start_reading()
        return data, arrival

    async def wait(self) -> None:
        """Until something arrives, or the end (the stream's timer may end the wait with TimeoutError)."""
        self.start_reading()
        waiter = self.waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    def _wake(self) -> None:
        if self.consumer is not None:
            self.consumer()
            return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # writing

    async def send_all(self, data: bytes | memoryview, timeout: float | None) -> None:
        view = memoryview(data)
        deadline = None if timeout is None else self.loop.time() + timeout
        while view:
            if self.closed:
                raise httpcore.WriteError("")
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                raise httpcore.WriteError("") from exc
            view = view[sent:]
            if view:
                await self._writable(deadline)

    async def _writable(self, deadline: float | None) -> None:
        writable = self.loop.create_future()
        self.loop.add_writer(self.fd, lambda: writable.done() or writable.set_result(None))
        try:
            async with asyncio.timeout_at(deadline):
                await writable
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(exc) from exc
        finally:
            self.loop.remove_writer(self.fd)

    def close(self) -> None:
        if not self.closed:
            self.stop_reading()
            with self._lock:
                self.closed = True
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_WR)
                self.sock.close()
            self._wake()


# -- reading while the event loop is stalled ---------------------------------------------------------------------------

STALL_AFTER = 0.003  # data the loop has left unread this long after it arrived is read by the stall reader
WATCH_TICK = 0.01  # while sockets are watched, the stall reader and a timer on the loop run at least this often
STALL_READER_LINGER = 5.0  # the thread ends after this long without a socket to watch
BLIND_AFTER = 0.02  # neither the loop nor the stall reader could read for this long: arrivals in it may share a stamp


class _StallReader:
    """Reads the probe sockets of one event loop while that loop is stalled, so their segments keep their own stamps.

    The kernel keeps one receive stamp for segments that queue up unread (see the module's doc): a loop busy for
    200 ms while four events arrive would give all four the last one's stamp. This thread waits on an epoll of the
    watched sockets (level-triggered: a socket is ready while it holds unread data). When one is ready it gives the
    loop STALL_AFTER to read it; a socket still ready then, that the loop has not read since, is read here (under the
    socket's lock) and the loop's reader woken. Python hands the GIL to a waiting thread at least every switch
    interval (5 ms), so while the loop runs Python code a stall is read within ~10 ms of the arrival. A healthy loop
    reads first. (The thread used to wake every 2 ms to read every socket of a loop whose timer, also every 2 ms, was
    late: 2.5-2.9 % of a core for 10 quiet streams on this machine's costly wake-ups, bench/quiet.py.)
    It also wakes every WATCH_TICK while sockets are watched, and a timer on the loop marks the loop alive as often:
    a span longer than BLIND_AFTER in which neither ran (the GIL held by C code or the collector, the core taken) is
    blind, and arrivals in it may carry a later segment's stamp (`read_blind_at`). (The loop's reads are no evidence
    that it kept up: after a stall it reads the fresh arrivals with the stale ones, before this thread gets the GIL.)
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # the loop holds this (through its sockets) while it lives; never the other way
        self.sockets: dict[int, _Socket] = {}  # by file descriptor
        self.alive_at = time.perf_counter()  # when the loop's timer last ran
        self._tick_handle: asyncio.TimerHandle | None = None
        # (start, end) perf_counter spans in which nothing could read (the GIL held by C code, the core taken): segments
        # that arrived in one may have been merged into one read with the newest one's stamp
        self.blind: collections.deque[tuple[float, float]] = collections.deque(maxlen=10_000)
        self._running = False  # a thread reads for this loop (it ends by itself, see _run)
        self._lock = threading.Lock()  # the loop starts a thread while the last one ends
        # Errors and hang-ups are reported with readiness: on uvloop the loop's reader is not called back for a reset
        # that comes right behind data (libuv treats POLLERR on a poll handle as the handle's own failure), so the
        # stream waited for its idle timeout: six streams cut that way all ended 15 s late (tests/test_probe_network.py)
        # on the daemon's loop. Those sockets are read here at once and their readers woken.
        self._ready = select.epoll() if hasattr(select, "epoll") else None  # none: no stall reading (no stamps there)

    def watch(self, sock: _Socket) -> None:
        if self._ready is None:
            return
        self.sockets[sock.fd] = sock
        with contextlib.suppress(OSError):  # already watched (FileExistsError)
            self._ready.register(sock.fd, select.EPOLLIN)
        if self._tick_handle is None:
            self.alive_at = time.perf_counter()
            self._tick_handle = sock.loop.call_later(WATCH_TICK, self._tick)
        with self._lock:  # a thread that is ending has cleared _running under this lock first
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="sse-monitor-stall-reader", daemon=True).start()

    def forget(self, sock: _Socket) -> None:
        if self.sockets.pop(sock.fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):  # not watched, or already closed
                self._ready.unregister(sock.fd)
        if not self.sockets and self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    def _tick(self) -> None:
        self.alive_at = time.perf_counter()
        loop = self._loop()
        self._tick_handle = loop.call_later(WATCH_TICK, self._tick) if self.sockets and loop is not None else None

    def _run(self) -> None:
        ran = idle_since = time.perf_counter()  # when this thread last ran
        while True:
            ready = self._ready.poll(WATCH_TICK)
            now = time.perf_counter()
            self._note_blind(ran, now, 0.0 if ready else WATCH_TICK)
            ran = now
            if not ready:
                if self.sockets:
                    idle_since = now
                elif now - idle_since > STALL_READER_LINGER or self._loop() is None:
                    with self._lock:  # watch() may be adding a socket right now: end only if it did not
                        if not self.sockets:
                            self._running = False
                            return
                continue
            troubled = [fd for fd, events in ready if events & (select.EPOLLERR | select.EPOLLHUP)]
            if troubled and self._read(troubled, now, at_once=True) is False:
                break
            time.sleep(STALL_AFTER)  # the loop's turn: a healthy one reads them meanwhile
            after = time.perf_counter()
            self._note_blind(ran, after, STALL_AFTER)
            ran = after
            if self._read([fd for fd, _ in ready], now) is False:
                break
        with self._lock:
            self._running = False

    def _note_blind(self, ran: float, now: float, waited: float) -> None:
        """This thread could not run from `ran + waited` to `now`: if the loop's timer did not run in it either and it
        lasted over BLIND_AFTER, arrivals in it may share a stamp."""
        unread = now - max(ran + waited, self.alive_at)
        if unread > BLIND_AFTER:
            self.blind.append((now - unread, now))

    def _read(self, fds: list[int], ready_at: float, at_once: bool = False) -> bool | None:
        """Read the sockets that were ready at `ready_at` and that the loop has not read since (all of them `at_once`),
        and wake their readers. False when the loop is gone."""
        changed = []
        for fd in fds:
            sock = self.sockets.get(fd)
            if sock is None:
                continue
            if (at_once or sock.read_at < ready_at) and sock.read_while_stalled():
                changed.append(sock)
            if sock.error is not None or sock.eof or sock.closed:  # done with it (level-triggered: it stays ready)
                with contextlib.suppress(OSError, ValueError):
                    self._ready.unregister(fd)
        loop = self._loop()
        if loop is None:
            return False
        if changed:
            try:
                loop.call_soon_threadsafe(_wake_all, changed)
            except RuntimeError:  # the loop is closed
                return False
        return True


def read_blind_at(moment: float, slack: float = 0.01) -> bool:
    """Whether an arrival stamped at this perf_counter moment may carry a later segment's stamp: it lies in a span in
    which this loop's probe sockets went unread for over BLIND_AFTER (or just after one, before the read came)."""
    reader = _STALL_READERS.get(asyncio.get_running_loop())
    if reader is None:
        return False
    for start, end in reversed(reader.blind):  # in the order they ended: stop at the first that ended before
        if end + slack < moment:
            return False
        if start <= moment:
            return True
    return False


def _wake_all(sockets: list[_Socket]) -> None:
    for sock in sockets:
        sock._wake()


_STALL_READERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _StallReader] = weakref.WeakKeyDictionary()


def _stall_reader(loop: asyncio.AbstractEventLoop) -> _StallReader:
    reader = _STALL_READERS.get(loop)
    if reader is None:
        reader = _STALL_READERS[loop] = _StallReader(loop)
    return reader


class _Stream(httpcore.AsyncNetworkStream):
    """One connection, as the probe's transport (monitor.transport) writes and reads it, through httpcore's stream
    interface; TLS (after start_tls) on an SSLObject over memory BIOs. The head is pulled (read), the body pushed
    (pump).

    `arrival` is the arrival of the bytes the last read (or piece pushed) carried: the probe's clock for them.
    """

    def __init__(self, raw: _Socket) -> None:
        self._raw = raw
        self._loop = raw.loop
        self._tls: ssl.SSLObject | None = None
        self._incoming: ssl.MemoryBIO | None = None
        self._outgoing: ssl.MemoryBIO | None = None
        self._fed: Arrival | None = None  # the arrival of the last ciphertext fed to TLS
        self._deadline = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = math.inf  # the perf_counter moment the read timer (not pump's) is due
        self.arrival: Arrival | None = None
        self.sent_at: tuple[float, float] | None = None  # (time.time(), perf_counter()) just before the request left
        self.kernel_stamps = raw.stamped
        self.throttled = False  # reading was paused at least once for keeping the loop busy
        self._handed_at: float | None = None  # perf_counter when the consumer got its last piece
        self._slice = 0.0  # consumer work since the stream last waited or yielded
        self._window_start = 0.0
        self._window_busy = 0.0
        self._head: bytes | None = None  # the response head read so far, while one is being read (from the request on)
        self._held: tuple[bytes, Arrival] | None = None  # bytes past a head's end, for the next read
        self._pumped: asyncio.Future[None] | None = None  # while pump() runs: done when the consumer is
        self._consume: typing.Callable[[bytes], bool] | None = None
        self._idle_timeout: float | None = None
        self._last_piece = 0.0  # perf_counter moment the consumer last finished a piece (the idle timeout runs from it)
        self._paused = False

    # -- reading -------------------------------------------------------------------------------------------------------

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._handed_at is not None:
            pause = self._account()
            if pause is not None:
                await self._pause(pause)
        max_bytes = min(max_bytes, PIECE_BYTES)
        held = self._held
        if held is not None:
            self._held = None
            data, self.arrival = held
            if len(data) > max_bytes:
                self._held, data = (data[max_bytes:], self.arrival), data[:max_bytes]
        else:
            while (data := self._available(max_bytes)) is None:
                await self._wait(timeout)
        if data:
            if self._head is not None:
                data = self._up_to_head_end(data)
            self._handed_at = time.perf_counter()
        return data

    def _available(self, max_bytes: int) -> bytes | None:
        """The next piece received (b"" at the end; self.arrival says when it came), or None when nothing waits."""
        raw = self._raw
        if self._tls is None:
            if raw.chunks:
                data, self.arrival = raw.take(max_bytes)
                return data
        else:
            while True:
                data = self._tls_read(max_bytes)
                if data is not None:
                    self.arrival = self._fed if data else Arrival(None, time.perf_counter())
                    return data
                if not raw.chunks:
                    break
                chunk, self._fed = raw.take(RECV_BYTES)
                self._incoming.write(chunk)
        if raw.error is not None:
            raise httpcore.ReadError(str(raw.error) or type(raw.error).__name__) from raw.error
        if raw.eof or raw.closed:
            if self._tls is not None and not self._incoming.eof:
                self._incoming.write_eof()
                return self._available(max_bytes)
            self.arrival = Arrival(None, time.perf_counter())
            return b""  # the end of the stream
        return None

    def _up_to_head_end(self, data: bytes) -> bytes:
        """While a response head is being read, no byte past its end (the blank line, as h11 finds it) is handed over:
        the rest, the body's first bytes, waits for the next read with its own arrival. So httpx's parser never holds
        body bytes, and the body can be read past it (monitor.http_body). An informational head (1xx) is followed by
        another head; a final one ends this."""
        head = self._head + data
        end = _HEAD_END.search(head, max(0, len(self._head) - 2))
        if end is None:
            self._head = head if len(head) <= MAX_HEAD_BYTES else None  # h11 refuses a longer head anyway
            return data
        cut = end.end() - len(self._head)
        self._head = b"" if head.startswith(b"HTTP/") and head[9:10] == b"1" else None
        if cut < len(data):
            self._held = (data[cut:], self.arrival)
            data = data[:cut]
        return data

    def _tls_read(self, max_bytes: int) -> bytes | None:
        """Plaintext available now (b"" at the end), or None when more ciphertext is needed."""
        try:
            return self._tls.read(max_bytes)
        except ssl.SSLWantReadError:
            return None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return b""  # the peer closed without close_notify: the end, as the stream below reported it
        except ssl.SSLError as exc:
            raise httpcore.ReadError(exc) from exc

    async def _wait(self, timeout: float | None) -> None:
        """Until the socket has news. The idle timeout arms no timer per wait: one timer per connection checks the
        deadline and is re-armed lazily."""
        self._slice = 0.0
        self._handed_at = None
        if timeout is not None:  # on perf_counter, the probe's clock (uvloop's loop time is in whole milliseconds)
            self._deadline = time.perf_counter() + timeout
            if self._timer is None or self._timer_due > self._deadline:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer, self._timer_due = self._loop.call_later(timeout, self._check_deadline), self._deadline
        try:
            await self._raw.wait()
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(exc) from exc
        finally:
            self._deadline = math.inf

    def _check_deadline(self) -> None:
        self._timer = None
        waiter = self._raw.waiter
        if waiter is None or waiter.done():
            return  # nobody waits now: the next wait arms the timer again
        left = self._deadline - time.perf_counter()
        if left <= 0:
            waiter.set_exception(TimeoutError())
        else:
            self._timer = self._loop.call_later(max(left, 0.001), self._check_deadline)
            self._timer_due = self._deadline

    def _account(self) -> float | None:
        """Count the consumer's work on the last piece. Returns how long to pause before reading on: 0 to let the
        others run first, more to stop reading this socket for the rest of the window; None to go on at once."""
        now = time.perf_counter()
        work = now - self._handed_at
        self._handed_at = None
        self._slice += work
        overrun = self._window_overrun(work, now)
        if overrun is not None:
            return overrun
        if self._slice > SLICE_SECONDS:
            return 0.0
        return None

    def _window_overrun(self, work: float, now: float) -> float | None:
        """Count `work` in the fairness window; past the stream's share, what is left of the window (seconds)."""
        if now - self._window_start >= FAIR_WINDOW:
            self._window_start, self._window_busy = now, 0.0
        self._window_busy += work
        if self._window_busy > FAIR_SHARE * FAIR_WINDOW:
            return self._window_start + FAIR_WINDOW - now
        return None

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self.throttled = True
            self._raw.hold(True)
            try:
                await asyncio.sleep(seconds)
            finally:
                self._raw.hold(False)
            self._window_start, self._window_busy = time.perf_counter(), 0.0
        else:
            await asyncio.sleep(0)
        self._slice = 0.0

    # -- pushing (the body) --------------------------------------------------------------------------------------------

    async def pump(self, consume: typing.Callable[[bytes], bool], timeout: float | None = None) -> None:
        """Hand every piece that arrives to `consume` (self.arrival says when it came), b"" once at the end, until it
        returns True. `consume` runs in the loop's reader callback as the bytes arrive: no task wakes, no future is
        made for a piece, which was half of a probe's CPU per event. Its exceptions, a read error, and `timeout`
        seconds without a piece (httpcore.ReadTimeout) end the pump by raising here. Fair as read() is: a consumer
        that keeps the loop busy past SLICE_SECONDS lets the others run first; past its FAIR_SHARE of a FAIR_WINDOW
        the socket is not read for the rest of the window (`throttled`)."""
        loop = self._loop
        done = self._pumped = loop.create_future()
        self._consume, self._idle_timeout = consume, timeout
        self._last_piece = time.perf_counter()
        self._window_start, self._window_busy = self._last_piece, 0.0
        self._raw.consumer = self._drain
        if self._timer is not None:  # the head's read deadline: left armed, it would keep this stream (and its socket)
            self._timer.cancel()     # alive on the loop for the whole read timeout after the probe ended
            self._timer, self._timer_due = None, math.inf
        if timeout is not None:
            self._timer = loop.call_later(timeout, self._check_idle)
        try:
            self._raw.start_reading()
            self._drain()
            await done
        finally:
            self._raw.consumer = None
            self._consume = self._pumped = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _drain(self) -> None:
        """Give the consumer what has arrived; called by the socket when bytes (or the end) arrive."""
        done = self._pumped
        if done is None or done.done() or self._paused:
            return
        started = piece_started = time.perf_counter()
        try:
            while True:
                held = self._held
                if held is not None:
                    self._held = None
                    data, self.arrival = held
                else:
                    data = self._available(PIECE_BYTES)
                    if data is None:
                        self._raw.start_reading()
                        return
                if self._consume(data) or not data:
                    done.set_result(None)
                    return
                now = self._last_piece = time.perf_counter()
                if self._over_share(now - piece_started, now):
                    return
                if now - started > SLICE_SECONDS:  # let the other streams' callbacks run first
                    self._loop.call_soon(self._drain)
                    return
                piece_started = now
        except BaseException as exc:  # the consumer's verdict (the stream ended early, ...) or a read error
            if not done.done():
                done.set_exception(exc)

    def _over_share(self, work: float, now: float) -> bool:
        """Count the consumer's work; past its share of the window, stop reading for the rest of it."""
        overrun = self._window_overrun(work, now)
        if overrun is None:
            return False
        self.throttled = self._paused = True
        self._raw.hold(True)
        self._loop.call_later(overrun, self._resume)
        return True

    def _resume(self) -> None:
        self._paused = False
        self._window_start, self._window_busy = time.perf_counter(), 0.0
        self._last_piece = time.perf_counter()  # the pause was ours, not the server's silence
        self._raw.hold(False)
        self._drain()

    def _check_idle(self) -> None:
        self._timer = None
        done = self._pumped
        if done is None or done.done() or self._idle_timeout is None:
            return
        # on perf_counter, the probe's clock: the loop's own time (uvloop's is in whole milliseconds) fired up to 1 ms
        # early by it, and the silence the probe reports came out just under the timeout
        left = self._last_piece + self._idle_timeout - time.perf_counter()
        if left <= 0 and not self._paused:
            done.set_exception(httpcore.ReadTimeout(""))
        else:
            self._timer = self._loop.call_later(max(left, 0.001), self._check_idle)

    # -- writing -------------------------------------------------------------------------------------------------------

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self.sent_at is None:  # the request's first bytes: the instant the probe's times are measured from
            self.sent_at = (time.time(), time.perf_counter())
            self._head = b""
        if self._tls is None:
            await self._raw.send_all(buffer, timeout)
            return
        try:
            self._tls.write(buffer)
        except ssl.SSLError as exc:
            raise httpcore.WriteError(exc) from exc
        await self._flush(timeout)

    async def _flush(self, timeout: float | None) -> None:
        pending = self._outgoing.read()
        if pending:
            await self._raw.send_all(pending, timeout)

    # -- TLS -----------------------------------------------------------------------------------------------------------

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = ssl_context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        try:
            async with asyncio.timeout(timeout):
                await self._handshake()
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(exc) from exc
        except ssl.SSLError as exc:
            await self.aclose()
            raise httpcore.ConnectError(exc) from exc
        except (OSError, httpcore.NetworkError) as exc:  # the peer went away during the handshake
            await self.aclose()
            raise httpcore.ConnectError("") from exc
        except BaseException:
            await self.aclose()
            raise
        return self

    async def _handshake(self) -> None:
        raw = self._raw
        while True:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush(None)
                while not raw.chunks:
                    if raw.error is not None:
                        raise raw.error
                    if raw.eof or raw.closed:
                        raise ConnectionResetError("the peer closed the connection during the TLS handshake")
                    await raw.wait()
                chunk, self._fed = raw.take(RECV_BYTES)
                self._incoming.write(chunk)
                continue
            await self._flush(None)
            self.arrival = self._fed
            return

    # -- the rest ------------------------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._raw.close()

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "ssl_object":
            return self._tls
        if info == "client_addr":
            return self._raw.sock.getsockname() if not self._raw.closed else None
        if info == "server_addr":
            return self._raw.sock.getpeername() if not self._raw.closed else None
        if info == "socket":
            return self._raw.sock
        if info == "is_readable":
            raw = self._raw
            return bool(raw.chunks) or self._held is not None or raw.eof or raw.error is not None or raw.closed
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
                sock = await _connect(host, port, local_address, socket_options)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(exc) from exc
        except OSError as exc:  # as anyio words it: a name that did not resolve, or every address failed
            raise httpcore.ConnectError(exc) from exc
        return _Stream(_Socket(sock, asyncio.get_running_loop()))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: typing.Iterable[typing.Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, path)
        except TimeoutError as exc:
            sock.close()
            raise httpcore.ConnectTimeout(exc) from exc
        except OSError as exc:
            sock.close()
            raise httpcore.ConnectError(exc) from exc
        return _Stream(_Socket(sock, loop))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_BACKEND = _Backend()


async def _connect(
    host: str, port: int, local_address: str | None, socket_options: typing.Iterable[typing.Any] | None
) -> socket.socket:
    """TCP connect with happy eyeballs, in anyio's order: the first IPv6 address, the first IPv4 one, then the rest,
    each started 250 ms after the previous unless that one failed sooner; the first to connect wins."""
    loop = asyncio.get_running_loop()
    local = None
    family = socket.AF_UNSPEC
    if local_address:
        family, *_, local = (await loop.getaddrinfo(local_address, 0))[0]
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and local is None:  # one address: nothing to race (the tasks below cost ~60 us a probe)
        try:
            return await _connect_one(loop, socket.AF_INET6 if literal.version == 6 else socket.AF_INET, (host, port),
                                      socket_options)
        except OSError as exc:
            raise OSError("All connection attempts failed") from exc  # as anyio words it
    if literal is not None:
        addresses = [(socket.AF_INET6 if literal.version == 6 else socket.AF_INET, (host, port))]
    else:
        found = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        addresses, v6, v4 = [], False, False
        for af, *_, sockaddr in found:
            if af == socket.AF_INET6 and not v6:
                v6 = True
                addresses.insert(0, (af, sockaddr))
            elif af == socket.AF_INET and not v4 and v6:
                v4 = True
                addresses.insert(1, (af, sockaddr))
            else:
                addresses.append((af, sockaddr))
    errors: list[OSError] = []
    connected: list[socket.socket] = []

    async def attempt(af: int, address: tuple, done: asyncio.Event) -> None:
        try:
            connected.append(await _connect_one(loop, af, address, socket_options, local))
        except OSError as exc:
            errors.append(exc)
        finally:
            done.set()

    attempts: list[asyncio.Task[None]] = []
    try:
        for af, address in addresses:
            done = asyncio.Event()
            attempts.append(asyncio.create_task(attempt(af, address, done)))
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
        for extra in connected[1:]:
            extra.close()
    if not connected:
        cause = errors[0] if len(errors) == 1 else ExceptionGroup("multiple connection attempts failed", errors)
        raise OSError("All connection attempts failed") from cause
    return connected[0]


async def _connect_one(loop: asyncio.AbstractEventLoop, af: int, address: tuple,
                       socket_options: typing.Iterable[typing.Any] | None, local: tuple | None = None) -> socket.socket:
    sock = socket.socket(af, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for option in socket_options or ():
            sock.setsockopt(*option)
        if local is not None:
            sock.bind(local)
        await loop.sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock
