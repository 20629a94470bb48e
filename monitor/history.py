"""Run history: every finished probe kept in SQLite (one writer thread, WAL, batched commits), bounded per target by
count and by age, numbered across restarts; a storage fault never stops probing and loses no finished run."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import fcntl
import itertools
import json
import os
import sqlite3
import sys
import threading
import time
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import structlog

from .result import OUTCOMES, ProbeResult

log = structlog.get_logger("sse_monitor")

MEMORY = ":memory:"  # storage.path that keeps history in this process only (same bounds, nothing on disk)
APPLICATION_ID = 0x53534D48  # PRAGMA application_id of our files ("SSMH"): anything else is not our database
# Schema migrations: MIGRATIONS[v] takes a file at user_version v to v + 1. Append only; never edit a released step.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        run INTEGER NOT NULL,
        started_at REAL NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL,
        ttft_seconds REAL,
        duration_seconds REAL NOT NULL,
        events INTEGER NOT NULL,
        warnings TEXT NOT NULL,
        alerts TEXT NOT NULL,
        result BLOB NOT NULL,
        token_times BLOB NOT NULL,
        comment_times BLOB NOT NULL,
        token_times_total INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX runs_by_target ON runs (target, run);
    CREATE INDEX runs_by_age ON runs (started_at);
    CREATE TABLE targets (target TEXT PRIMARY KEY, last_run INTEGER NOT NULL) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# A stored run keeps at most this many arrival times per array (evenly spaced, first and last kept): a timeline draws
# one column per pixel, and a stream at the probe's own cap (100,000 token events) would otherwise cost ~200 KB a run.
MAX_STORED_TIMES = 10_000
BATCH_SECONDS = 0.2  # the writer gathers runs this long before a commit: a finished run is committed within ~0.3 s
WRITE_BATCH = 500  # runs per transaction
RETRY_SECONDS = 5.0  # after a fault, how often the file is tried again
MAINTAIN_SECONDS = 60.0  # how often runs past storage.retention are deleted and the file's size is read
DELETE_BATCH = 500  # rows per delete: the lock is let go between batches, so pages and writes never wait long
# Runs waiting for a broken disk stay in memory, encoded (~1-2 KB each), up to this many bytes; past it the oldest go,
# counted in sse_monitor_storage_errors_total{operation="dropped"} (1,000 targets every 60 s: ~5 h of runs).
MAX_UNWRITTEN_BYTES = 64 * 1024 * 1024
OPERATIONS = ("open", "write", "read", "retention", "dropped")

_LITTLE = sys.byteorder == "little"


class StorageMetrics(Protocol):
    """What history reports about itself (monitor.metrics.Metrics has these)."""

    storage_up: Any  # Gauge: 1 while the file is open and writable
    storage_errors: Any  # Counter{operation}
    storage_bytes: Any  # Gauge: the file's size, with its write-ahead log


@dataclass(frozen=True)
class Run:
    """One finished probe of a target. `run` numbers a target's runs from 1, across restarts."""

    run: int
    result: ProbeResult  # without its trace; the time arrays may be thinned (token_times_total says)
    token_times_total: int  # how many token arrival times the probe kept

    @property
    def thinned(self) -> bool:
        return len(self.result.token_times) < self.token_times_total


class RunSummary(NamedTuple):
    """A row of a target's run table: what the pages list without decoding a whole run."""

    run: int
    started_at: float
    outcome: str
    reason: str
    ttft_seconds: float | None
    duration_seconds: float
    events: int
    warnings: tuple[str, ...]
    alerts: tuple[str, ...]


class Recent:
    """A target's newest TTFTs and outcomes (oldest first) for the landing page: ~9 bytes a run."""

    __slots__ = ("ttfts", "outcomes", "keep")

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.ttfts = array("d")  # NaN: no token
        self.outcomes = bytearray()  # index into OUTCOMES

    def add(self, ttft: float | None, outcome: str) -> None:
        self.ttfts.append(float("nan") if ttft is None else ttft)
        self.outcomes.append(OUTCOMES.index(outcome) if outcome in OUTCOMES else 0)
        if len(self.outcomes) > self.keep:
            del self.ttfts[: len(self.ttfts) - self.keep]
            del self.outcomes[: len(self.outcomes) - self.keep]

    def ttft_list(self) -> list[float | None]:
        return [None if t != t else t for t in self.ttfts]

    def outcome_list(self) -> list[str]:
        return [OUTCOMES[i] for i in self.outcomes]


# ---- encoding ---------------------------------------------------------------------------------------------------------


def thin(times: array, keep: int) -> array:
    """At most `keep` of `times`, evenly spaced, the first and the last always among them."""
    n = len(times)
    if n <= keep:
        return times
    return array("d", (times[round(i * (n - 1) / (keep - 1))] for i in range(keep)))


def encode_times(times: array) -> bytes:
    """Arrival times as microsecond deltas (int64, little-endian), zlib-compressed: ~2 bytes a time."""
    if not times:
        return b""
    micros = [round(t * 1e6) for t in times]
    deltas = array("q", itertools.chain((micros[0],), (b - a for a, b in zip(micros, micros[1:]))))
    if not _LITTLE:
        deltas.byteswap()
    return zlib.compress(deltas.tobytes(), 6)


def decode_times(blob: bytes) -> array:
    if not blob:
        return array("d")
    deltas = array("q")
    deltas.frombytes(zlib.decompressobj().decompress(blob, MAX_STORED_TIMES * 8))  # bounded, whatever the file holds
    if not _LITTLE:
        deltas.byteswap()
    return array("d", (v / 1e6 for v in itertools.accumulate(deltas)))


def _row(target: str, run: Run) -> tuple:
    r = run.result
    data = r.to_dict()
    data.pop("trace", None)
    return (target, run.run, r.started_at, r.outcome, r.reason, r.ttft_seconds, r.duration_seconds, r.events,
            ",".join(r.warnings), ",".join(r.alerts),
            zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 6),
            encode_times(thin(r.token_times, MAX_STORED_TIMES)), encode_times(thin(r.comment_times, MAX_STORED_TIMES)),
            run.token_times_total)


_INSERT = ("INSERT OR REPLACE INTO runs (target, run, started_at, outcome, reason, ttft_seconds, duration_seconds, events, "
           "warnings, alerts, result, token_times, comment_times, token_times_total) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_SUMMARY_COLUMNS = "run, started_at, outcome, reason, ttft_seconds, duration_seconds, events, warnings, alerts"


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


def _summary_of_row(row: tuple) -> RunSummary:
    return RunSummary(*row[1:8], _split(row[8]), _split(row[9]))


def _summary_of_run(run: Run) -> RunSummary:
    r = run.result
    return RunSummary(run.run, r.started_at, r.outcome, r.reason, r.ttft_seconds, r.duration_seconds, r.events,
                      tuple(r.warnings), tuple(r.alerts))


def _run_of_row(run: int, result: bytes, token_times: bytes, comment_times: bytes, total: int) -> Run:
    data = json.loads(zlib.decompress(result))
    r = ProbeResult.from_dict(data)
    r.token_times, r.comment_times = decode_times(token_times), decode_times(comment_times)
    return Run(run, r, total)


class StorageFault(Exception):
    """The file cannot be used now; the message says why, in a sentence."""


def _cause(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return str(exc)


# ---- the store --------------------------------------------------------------------------------------------------------


class History:
    """Every finished run, numbered per target, in an SQLite file (or in memory with path ":memory:").

    `record()` is called on the event loop and never touches the disk: it numbers the run and queues it. One writer
    thread encodes and commits the queue in batches, enforces the bounds (`per_target` newest runs, `retention`
    seconds of age) and survives faults: while the file cannot be written, runs wait in memory (bounded) and the file
    is tried again every RETRY_SECONDS. Reads (`summaries`, `run`, `runs`) are blocking: call them off the loop.
    They see queued runs too, so a page shows a run as soon as it finished, whether or not the disk took it."""

    def __init__(self, path: str | Path, *, per_target: int, retention: float,
                 metrics: StorageMetrics | None = None) -> None:
        self.path = str(path)
        self.per_target = per_target
        self.retention = retention
        self.metrics = metrics
        self._lock = threading.Condition()  # guards everything below but the connection
        self._queued: list[tuple[str, Run]] = []  # recorded, not yet encoded (the writer takes them)
        self._unwritten: collections.OrderedDict[tuple[str, int], tuple] = collections.OrderedDict()  # encoded rows
        self._unwritten_bytes = 0
        self._last: dict[str, int] = {}  # the newest run number per target
        self._recent: dict[str, Recent] = {}
        self._db_lock = threading.Lock()  # one connection, used by the writer and the readers in turn
        self._db: sqlite3.Connection | None = None
        self._claim: int | None = None  # the open lock file (PATH.lock) that makes the file this process's alone
        self._fault: str | None = None  # why the file is not in use now
        self._adopted = False  # the file's recent runs were read (once: later the memory has them all)
        self._next_try = 0.0
        self._next_maintenance = 0.0
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- the event loop's side ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the file (numbering continues from it) and start the writer; a fault here only delays the file."""
        self._stopping = False
        self._try_open()
        self._thread = threading.Thread(target=self._write_loop, name="sse-monitor-history", daemon=True)
        self._thread.start()

    def record(self, target: str, result: ProbeResult) -> Run:
        """Number a finished run and queue it for the file. Never blocks on the disk."""
        with self._lock:
            number = self._last.get(target, 0) + 1
            self._last[target] = number
            run = Run(number, result, len(result.token_times))
            self._recent_of(target).add(result.ttft_seconds, result.outcome)
            self._queued.append((target, run))
            self._lock.notify()
        return run

    def recent(self, target: str) -> Recent | None:
        return self._recent.get(target)

    def last_run(self, target: str) -> int:
        return self._last.get(target, 0)

    def forget(self, target: str) -> None:
        """A target left the configuration: drop what memory holds of it (its stored runs age out)."""
        with self._lock:
            self._recent.pop(target, None)

    def resize(self, per_target: int, retention: float) -> None:
        with self._lock:
            self.per_target, self.retention = per_target, retention
            for recent in self._recent.values():
                recent.keep = per_target
            self._next_maintenance = 0.0
            self._lock.notify()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (within `timeout`) and close the file."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close()

    @property
    def up(self) -> bool:
        return self._db is not None

    @property
    def fault(self) -> str | None:
        return self._fault

    # -- reads (blocking) -------------------------------------------------------------------------------------------

    def summaries(self, target: str, limit: int | None = None) -> list[RunSummary]:
        """The target's kept runs, newest first."""
        limit = limit or self.per_target
        pending = {run.run: _summary_of_run(run) for run in self._pending_runs(target)}
        rows = self._read(f"SELECT target, {_SUMMARY_COLUMNS} FROM runs WHERE target = ? ORDER BY run DESC LIMIT ?",
                          (target, limit))
        merged = {row[1]: _summary_of_row(row) for row in rows}
        merged.update(pending)
        return [merged[k] for k in sorted(merged, reverse=True)[:limit]]

    def run(self, target: str, number: int) -> Run | None:
        for run in self._pending_runs(target):
            if run.run == number:
                return run
        rows = self._read("SELECT run, result, token_times, comment_times, token_times_total FROM runs "
                          "WHERE target = ? AND run = ?", (target, number))
        return self._decode(rows[0]) if rows else None

    def runs(self, target: str, limit: int | None = None) -> list[Run]:
        """The target's kept runs, whole (without traces), newest first."""
        limit = limit or self.per_target
        merged = {run.run: run for run in self._pending_runs(target)}
        rows = self._read("SELECT run, result, token_times, comment_times, token_times_total FROM runs "
                          "WHERE target = ? ORDER BY run DESC LIMIT ?", (target, limit))
        for row in rows:
            if row[0] not in merged and (run := self._decode(row)) is not None:
                merged[row[0]] = run
        return [merged[k] for k in sorted(merged, reverse=True)[:limit]]

    def _decode(self, row: tuple) -> Run | None:
        """A stored run; None (counted, logged) when its row cannot be read back, so one bad row costs only itself."""
        try:
            return _run_of_row(*row)
        except (zlib.error, ValueError, TypeError, KeyError) as exc:
            self._count("read")
            log.error("storage_read_failed", file=self.path, run=row[0], cause=f"a stored run cannot be decoded: {exc}")
            return None

    def _pending_runs(self, target: str) -> list[Run]:
        """Runs of the target that are not in the file yet: queued, or waiting for the disk."""
        with self._lock:
            queued = [run for name, run in self._queued if name == target]
            rows = [row for (name, _), row in self._unwritten.items() if name == target]
        return queued + [_run_of_row(row[1], *row[10:]) for row in rows]

    def _read(self, sql: str, args: tuple) -> list[tuple]:
        with self._db_lock:
            if self._db is None:
                return []
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                self._count("read")
                log.error("storage_read_failed", file=self.path, cause=_cause(exc))
                return []

    # -- the writer thread ------------------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        _name_thread(b"sse-history")  # so that top -H (and the benchmark) can tell its CPU from the event loop's
        while True:
            with self._lock:
                if not self._queued and not self._stopping:
                    self._lock.wait(timeout=self._sleep_for())
                stopping = self._stopping
            if not stopping:
                time.sleep(BATCH_SECONDS)  # let a burst of finished runs share one commit
            try:
                if self._db is None and (stopping or time.monotonic() >= self._next_try):
                    self._try_open()
                while self._encode_queued() and self._db is not None:  # a backlog: a batch at a time
                    self._flush()
                if self._db is not None:
                    self._flush()
                if self._db is not None and time.monotonic() >= self._next_maintenance and not stopping:
                    self._maintain()
            except Exception:  # a bug here must not end history for the process's life
                log.exception("storage_writer_failed", file=self.path)
            if stopping:
                return

    def _sleep_for(self) -> float:
        wake = self._next_maintenance if self._db is not None else self._next_try
        return max(0.05, min(wake - time.monotonic(), MAINTAIN_SECONDS))

    def _encode_queued(self) -> bool:
        """Encode queued runs into rows waiting for the file: a batch while the file is up (so that a burst never
        piles up past the cap below), all of them while it is not. True when runs are still queued."""
        with self._lock:
            # they stay queued (and readers see them) until they are encoded
            queued = self._queued[:WRITE_BATCH] if self._db is not None else self._queued[:]
        rows = [((target, run.run), _row(target, run)) for target, run in queued]
        with self._lock:
            del self._queued[:len(queued)]  # only record() adds to the queue, at its end
            for key, row in rows:
                self._unwritten[key] = row
                self._unwritten_bytes += _size(row)
            while self._db is None and self._unwritten_bytes > MAX_UNWRITTEN_BYTES and len(self._unwritten) > 1:
                (target, number), row = self._unwritten.popitem(last=False)
                self._unwritten_bytes -= _size(row)
                self._count("dropped")
                log.error("storage_run_dropped", file=self.path, target=target, run=number,
                          why=f"the file has been unusable too long ({self._fault}); runs waiting for it are capped "
                              f"at {MAX_UNWRITTEN_BYTES} bytes")
            return len(self._queued) > 0

    def _flush(self) -> None:
        """Commit the runs waiting for the file, batch by batch; keep them on a fault."""
        while True:
            with self._lock:
                batch = list(itertools.islice(self._unwritten.items(), WRITE_BATCH))
                per_target = self.per_target
            if not batch:
                return
            newest: dict[str, int] = {}
            for (target, number), _ in batch:
                newest[target] = max(newest.get(target, 0), number)
            try:
                with self._db_lock:
                    db = self._connection()
                    with db:  # one transaction
                        db.executemany(_INSERT, [row for _, row in batch])
                        db.executemany("INSERT INTO targets (target, last_run) VALUES (?, ?) ON CONFLICT (target) "
                                       "DO UPDATE SET last_run = max(last_run, excluded.last_run)", newest.items())
                        db.executemany("DELETE FROM runs WHERE target = ? AND run <= ?",
                                       [(t, n - per_target) for t, n in newest.items()])
            except (sqlite3.Error, OSError) as exc:
                self._broken("write", exc)
                return
            with self._lock:
                for key, row in batch:
                    if self._unwritten.get(key) is row:
                        del self._unwritten[key]
                        self._unwritten_bytes -= _size(row)

    def _maintain(self) -> None:
        """Delete runs older than the retention, a small batch at a time; read the file's size."""
        self._next_maintenance = time.monotonic() + MAINTAIN_SECONDS
        cutoff = time.time() - self.retention
        try:
            while True:
                with self._db_lock:
                    db = self._connection()
                    with db:
                        deleted = db.execute("DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE started_at < ? "
                                             "LIMIT ?)", (cutoff, DELETE_BATCH)).rowcount
                if deleted < DELETE_BATCH:
                    break
                time.sleep(0.01)
            with self._db_lock:
                size = self._file_bytes(self._connection())
        except (sqlite3.Error, OSError) as exc:
            self._broken("retention", exc)
            return
        if self.metrics is not None:
            self.metrics.storage_bytes.set(size)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.OperationalError("the file was closed")
        return self._db

    def _file_bytes(self, db: sqlite3.Connection) -> int:
        if self.path == MEMORY:
            return db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0]
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    # -- opening, faults ------------------------------------------------------------------------------------------------

    def _try_open(self) -> None:
        self._next_try = time.monotonic() + RETRY_SECONDS
        try:
            db = self._open()
        except (StorageFault, sqlite3.Error, OSError) as exc:
            self._broken("open", exc)
            return
        with self._db_lock:
            self._db = db
        self._adopt(db)
        was = self._fault
        self._fault = None
        self._next_maintenance = 0.0
        if self.metrics is not None:
            self.metrics.storage_up.set(1)
            self.metrics.storage_bytes.set(self._file_bytes(db))
        if was is not None:
            log.info("storage_recovered", file=self.path, after=was)

    def _open(self) -> sqlite3.Connection:
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._claim_file()
        try:
            db = sqlite3.connect(self.path, timeout=1.0, isolation_level=None, check_same_thread=False)
        except BaseException:
            self._release_claim()
            raise
        try:
            self._prepare(db)
        except BaseException:
            db.close()
            self._release_claim()
            raise
        return db

    def _claim_file(self) -> None:
        """One monitor per file: an exclusive lock on PATH.lock, held while the file is open. (Other programs may
        read the database meanwhile, e.g. the sqlite3 shell: WAL lets them.)"""
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StorageFault("locked: another sse-monitor process uses this file") from None
        except BaseException:
            os.close(fd)
            raise
        self._claim = fd

    def _release_claim(self) -> None:
        if self._claim is not None:
            os.close(self._claim)  # closing the descriptor lets the lock go
            self._claim = None

    def _close(self) -> None:
        with self._db_lock:
            if self._db is not None:
                try:
                    self._db.close()
                except sqlite3.Error:
                    pass
                self._db = None
        self._release_claim()

    def _prepare(self, db: sqlite3.Connection) -> None:
        """Claim the file for this process, check that it is ours and of a version we know, migrate it."""
        db.isolation_level = None
        try:
            application_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            if "locked" in str(exc):
                raise
            self._set_aside(db, f"not an SQLite database ({exc})")
        if application_id != APPLICATION_ID and (tables or version):
            self._set_aside(db, f"an SQLite database, but not sse-monitor's (application_id {application_id})")
        if version > SCHEMA_VERSION:
            raise StorageFault(f"its schema is version {version}, newer than this sse-monitor knows ({SCHEMA_VERSION}):"
                               " written by a newer release; it is left as it is")
        if self.path != MEMORY:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # WAL: a process crash loses no commit
            db.execute("PRAGMA journal_size_limit = 8388608")
        db.execute("BEGIN IMMEDIATE")
        try:
            check = db.execute("PRAGMA quick_check").fetchone()[0] if tables else "ok"
            if check != "ok":
                db.execute("ROLLBACK")
                self._set_aside(db, f"corrupt ({check})")
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if version < SCHEMA_VERSION and version > 0:
            log.info("storage_migrated", file=self.path, from_version=version, to_version=SCHEMA_VERSION)

    def _set_aside(self, db: sqlite3.Connection, why: str) -> None:
        """Move a file that is not a usable history aside (renamed with a timestamp, never deleted)."""
        db.close()
        if self.path == MEMORY:
            raise StorageFault(why)
        aside = f"{self.path}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        for suffix in ("-wal", "-shm", ""):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, aside + suffix)
        log.error("storage_moved_aside", file=self.path, moved_to=aside, cause=why)
        raise StorageFault(f"{why}: moved to {aside}; a fresh file is started")

    def _adopt(self, db: sqlite3.Connection) -> None:
        """Numbering continues from the file, and the landing page's recent runs come from it. Runs recorded while the
        file could not be read keep their place after the file's own (renumbered when they would collide)."""
        with self._db_lock:
            stored = dict(db.execute("SELECT target, last_run FROM targets").fetchall())
            rows = [] if self._adopted else db.execute(
                "SELECT target, ttft_seconds, outcome FROM runs ORDER BY target, run").fetchall()
        with self._lock:
            memory = {} if self._adopted else {t: self._recent.pop(t) for t in list(self._recent)}
            self._adopted = True
            for target, ttft, outcome in rows:
                self._recent_of(target).add(ttft, outcome)
            for target, recent in memory.items():
                merged = self._recent_of(target)
                for ttft, outcome in zip(recent.ttft_list(), recent.outcome_list()):
                    merged.add(ttft, outcome)
            for target, last in stored.items():
                mine = self._last.get(target, 0)
                if mine and self._first_pending(target) <= last:
                    self._renumber(target, last)
                else:
                    self._last[target] = max(mine, last)

    def _first_pending(self, target: str) -> int:
        numbers = [run.run for name, run in self._queued if name == target]
        numbers += [number for (name, number) in self._unwritten if name == target]
        return min(numbers, default=self._last.get(target, 0) + 1)

    def _renumber(self, target: str, after: int) -> None:
        """Runs recorded before the file could be read would collide with its own: number them after its last."""
        keys = sorted(number for (name, number) in self._unwritten if name == target)
        mapping = {old: after + i + 1 for i, old in enumerate(keys)}
        nxt = after + len(keys)
        for i, (name, run) in enumerate(self._queued):
            if name == target:
                nxt += 1
                self._queued[i] = (name, Run(nxt, run.result, run.token_times_total))
        for old in keys:
            row = self._unwritten.pop((target, old))
            self._unwritten[(target, mapping[old])] = (row[0], mapping[old], *row[2:])
        self._last[target] = nxt
        log.warning("storage_runs_renumbered", file=self.path, target=target, first=after + 1, last=nxt,
                    why="runs recorded before the file could be read would have reused its numbers")

    def _broken(self, operation: str, exc: BaseException) -> None:
        """The file failed: count it, say so once, close it, and try again later. Probing goes on."""
        self._count(operation)
        cause = _cause(exc)
        self._close()
        if self.metrics is not None:
            self.metrics.storage_up.set(0)
        if cause != self._fault:
            log.error("storage_failed", file=self.path, operation=operation, cause=cause,
                      runs_waiting=len(self._unwritten) + len(self._queued),
                      next=f"probing goes on; the file is tried again every {RETRY_SECONDS:g} s")
        self._fault = cause
        self._next_try = time.monotonic() + RETRY_SECONDS

    def _count(self, operation: str) -> None:
        if self.metrics is not None:
            self.metrics.storage_errors.labels(operation).inc()

    def _recent_of(self, target: str) -> Recent:
        recent = self._recent.get(target)
        if recent is None:
            recent = self._recent[target] = Recent(self.per_target)
        return recent


def _name_thread(name: bytes) -> None:
    """The calling thread's name as the OS shows it (/proc/PID/task/TID/comm); Linux only, else nothing."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(15, name, 0, 0, 0)  # PR_SET_NAME


def _size(row: tuple) -> int:
    return 200 + sum(len(v) for v in row if isinstance(v, (bytes, str)))
