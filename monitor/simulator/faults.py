"""The faults: what a broken origin or proxy does to a stream (drop, garbage, huge line, gzip, bomb, bad resumption)."""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import AsyncIterator, Iterator

PIECE = 64 * 1024  # bodies of hostile modes go out in pieces of this size
NEVER_UTF8 = bytes(range(0xF5, 0x100)) + b"\xc0\xc1"  # byte values that never occur in valid UTF-8
GARBAGE_TABLE = bytes(NEVER_UTF8[i % len(NEVER_UTF8)] for i in range(256))


class SimulatedDrop(Exception):
    """Raised inside a response body so that uvicorn cuts the connection without finishing the body."""


def first_event(last: int | None, fault: str) -> int | None:
    """The id of the first event a stream sends: 1 unless it resumes after event `last`; then last + 1, or by `fault`:
    restart 1, gap last + 3 (two skipped), duplicate last (the one the client saw comes again), refuse None (no
    stream: the server refuses to resume)."""
    if last is None:
        return 1
    return {"refuse": None, "restart": 1, "gap": last + 3, "duplicate": max(last, 1)}.get(fault, last + 1)


def _pieces(total: int, size: int = PIECE) -> Iterator[int]:
    for start in range(0, total, size):
        yield min(size, total - start)


def _huge_line(size: int, eol: bytes) -> Iterator[bytes]:
    """One `data:` line of `size` bytes (its terminator aside), as an event of its own."""
    yield b"data: "
    for n in _pieces(max(0, size - len(b"data: "))):
        yield b"x" * n
    yield eol + eol


async def gzipped(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Gzip a stream, flushing after every chunk so it still streams; a drop leaves the gzip member unfinished."""
    z = zlib.compressobj(wbits=31)
    async for chunk in chunks:
        yield z.compress(chunk) + z.flush(zlib.Z_SYNC_FLUSH)
    yield z.flush()


async def garbage(size: int) -> AsyncIterator[bytes]:
    for n in _pieces(size):
        yield os.urandom(n).translate(GARBAGE_TABLE)


async def gzip_bomb(size: int) -> AsyncIterator[bytes]:
    """A gzip member that inflates to `size` bytes of `a`, compressed a block at a time."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = memoryview(b"a" * (1 << 20))
    for n in _pieces(size, len(block)):
        out = z.compress(block[:n])
        if out:
            yield out
        await asyncio.sleep(0)
    yield z.flush()
