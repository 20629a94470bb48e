"""Ground truth: when each request came in and when its first byte and first token went out, as JSON lines."""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

RECEIVED_KEY = "sse_monitor.simulator.received"  # in the ASGI scope: (time.time() of the request's first bytes, how)


class TruthLog:
    """Per request, JSON lines of wall-clock times (time.time()), for a benchmark to pair with what a monitor reported:

        {"tag": ..., "path": ..., "status": 200, "received": T, "received_by": "kernel", "app": T,
         "first_byte": T, "first_token": T}

    `received`: the request's first bytes arrived (`received_by` "kernel": the kernel's receive time; "loop": when the
    event loop handed them over, see server._server_protocol; "app": the endpoint's entry, when create_app() is served by
    another server); `app`: the endpoint was entered; `first_byte`: just before the response start (status line and
    headers) was handed to the server; `first_token`: just before the chunk carrying the first token event was (null
    when none was sent). A record is written once the first token is out, or when the response ends. Writes go to a
    1 MiB buffer flushed at most once a second and on close; after `max_records` records the rest are only counted
    (`dropped`)."""

    FLUSH_SECONDS = 1.0

    def __init__(self, path: str | os.PathLike[str], max_records: int = 1_000_000) -> None:
        self.path = os.fspath(path)
        self.max_records = max_records
        self.written = 0
        self.dropped = 0
        self._file: Any = open(self.path, "a", buffering=1 << 20, encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._flushed = time.monotonic()

    def request(self, path: str, tag: str | None, received: tuple[float | None, str], app: float) -> Truth:
        at, how = received
        return Truth(self, path, tag, app if at is None else at, how, app)

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None or self.written >= self.max_records:
            self.dropped += 1
            return
        try:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            self.written += 1
            now = time.monotonic()
            if now - self._flushed >= self.FLUSH_SECONDS:
                self._flushed = now
                self._file.flush()
        except (OSError, ValueError):  # a full disk must not take the origin down: stop logging, keep counting
            self.dropped += 1
            self._close_file()

    def close(self) -> None:
        self._close_file()

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError, ValueError):
                file.close()


class Truth:
    """One request's record in a TruthLog: filled as the response goes out, written once."""

    __slots__ = ("log", "path", "tag", "received", "received_by", "app", "first_byte", "first_token", "status",
                 "written")

    def __init__(self, log: TruthLog, path: str, tag: str | None, received: float, received_by: str,
                 app: float) -> None:
        self.log, self.path, self.tag, self.received, self.app = log, path, tag, received, app
        self.received_by = received_by
        self.first_byte: float | None = None
        self.first_token: float | None = None
        self.status: int | None = None
        self.written = False

    def done(self) -> None:
        if not self.written:
            self.written = True
            self.log.write({"tag": self.tag, "path": self.path, "status": self.status, "received": self.received,
                            "received_by": self.received_by, "app": self.app, "first_byte": self.first_byte,
                            "first_token": self.first_token})
