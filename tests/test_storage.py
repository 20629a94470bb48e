"""Run history in SQLite: what is written comes back whole, numbering continues across restarts, retention by count
and by age, migrations, and every storage fault (garbage, someone else's database, a newer schema, a second daemon,
a full or read-only filesystem, a directory that cannot be made) keeps probing going, says so in the metrics and
recovers when the fault clears."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import time
from array import array
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import monitor.history as history_module
from conftest import IN_CI
from monitor.history import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, History, decode_times, encode_times
from monitor.metrics import Metrics
from monitor.result import COMPLETED, ENDED_EARLY, FAILED, ProbeResult, ResumeResult
from servers import running_daemon, wait_until


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    """A broken file is tried again every 0.3 s here (5 s in the daemon), so recovery is seen quickly."""
    monkeypatch.setattr(history_module, "RETRY_SECONDS", 0.3)


def result(i: int = 0, *, started_at: float | None = None, outcome: str = COMPLETED, tokens: int = 64) -> ProbeResult:
    times = array("d", (0.25 + i * 0.001 + k * 0.0125 for k in range(tokens)))
    return ProbeResult(url="http://127.0.0.1:9/v1/chat/completions", dialect="openai-chat", outcome=outcome,
                       reason="ok" if outcome == COMPLETED else "connection_lost", status_code=200,
                       started_at=time.time() if started_at is None else started_at, headers_seconds=0.01,
                       ttft_seconds=0.25 + i * 0.001, duration_seconds=1.1, events=tokens + 2, token_events=tokens,
                       warnings=["buffering_suspected"] if i % 2 else [], alerts=[] if outcome == COMPLETED else
                       ["SSEProbeStreamEndedEarly"], response_headers={"content-type": "text/event-stream"},
                       token_times=times, comment_times=array("d", (0.5, 1.0)))


def metrics() -> Metrics:
    return Metrics(registry=CollectorRegistry())


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


@contextlib.contextmanager
def opened(path: Path | str, per_target: int = 100, retention: float = 86400.0, m: Metrics | None = None):
    h = History(path, per_target=per_target, retention=retention, metrics=m)
    h.start()
    try:
        yield h
    finally:
        h.stop()


def stored(path: Path) -> list[tuple[str, int]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT target, run FROM runs ORDER BY target, run").fetchall()


def test_times_survive_the_encoding_to_the_microsecond():
    times = array("d", [0.0, 0.000001, 0.25, 0.2500004, 1.5, 1.2, 3600.123456])  # not sorted: deltas may be negative
    back = decode_times(encode_times(times))
    assert len(back) == len(times) and max(abs(a - b) for a, b in zip(times, back)) <= 0.5e-6
    assert decode_times(encode_times(array("d"))) == array("d")
    regular = array("d", (0.3 + k * 0.02 for k in range(1000)))
    assert len(encode_times(regular)) < 1000  # ~1 byte a time for a steady stream: compact on disk


def test_a_run_comes_back_whole_after_a_restart_and_numbering_continues(tmp_path):
    path = tmp_path / "h.db"
    first = result(1)
    first.resume = ResumeResult(outcome="resumed", detail="ok", last_id="5", events_before=5)
    with opened(path) as h:
        assert [h.record("chat", r).run for r in (first, result(2), result(3))] == [1, 2, 3]
        assert h.record("other", result(4)).run == 1
    with opened(path) as h:
        assert h.record("chat", result(5)).run == 4  # numbers are never reused
        runs = h.runs("chat")
        summaries = h.summaries("chat")
        one = h.run("chat", 1)
        recent = h.recent("chat")
    assert [r.run for r in runs] == [4, 3, 2, 1] and [s.run for s in summaries] == [4, 3, 2, 1]
    back = one.result
    assert back.to_dict() == first.to_dict()  # every field, the resumption check included
    assert max(abs(a - b) for a, b in zip(back.token_times, first.token_times)) <= 1e-6
    assert list(back.comment_times) == [0.5, 1.0] and one.token_times_total == 64 and not one.thinned
    assert summaries[1].warnings == ("buffering_suspected",) and summaries[0].ttft_seconds == pytest.approx(0.255)
    assert recent.ttft_list() == pytest.approx([0.251, 0.252, 0.253, 0.255])  # the landing page's, from the file


def test_a_run_being_encoded_is_still_seen_by_the_pages(tmp_path, monkeypatch):
    """The writer takes queued runs to encode them outside its lock; a page read in that moment still sees them (it
    once saw neither the queue nor the file: an empty history on a busy machine)."""
    import threading
    encoding, release = threading.Event(), threading.Event()
    real_row = history_module._row

    def slow_row(target, run):
        encoding.set()
        release.wait(10)
        return real_row(target, run)

    monkeypatch.setattr(history_module, "_row", slow_row)
    with opened(tmp_path / "h.db") as h:
        h.record("chat", result(1))
        assert encoding.wait(10), "the writer never encoded the run"
        try:
            seen = [r.run for r in h.runs("chat")], [s.run for s in h.summaries("chat")], h.run("chat", 1)
        finally:
            release.set()
    assert seen[0] == [1] and seen[1] == [1] and seen[2] is not None and stored(tmp_path / "h.db") == [("chat", 1)]


def test_a_burst_of_runs_is_written_whole_while_the_file_is_fine(tmp_path, monkeypatch):
    """The cap on runs waiting in memory is for a file that cannot be written; a burst faster than the writer (a
    thousand targets finishing at once, the benchmark's prefill) is written a batch at a time, none dropped."""
    one_run = history_module._size(history_module._row("t", history_module.Run(1, result(0), 64)))
    monkeypatch.setattr(history_module, "MAX_UNWRITTEN_BYTES", 50 * one_run)  # far below one batch
    m = metrics()
    with opened(tmp_path / "h.db", per_target=10, m=m) as h:
        for i in range(1500):
            h.record(f"t{i % 300}", result(i))
    assert len(stored(tmp_path / "h.db")) == 1500 and not sample(m, "sse_monitor_storage_errors_total",
                                                                  operation="dropped")


def test_retention_keeps_the_newest_runs_per_target_and_deletes_old_ones(tmp_path):
    path = tmp_path / "h.db"
    with opened(path, per_target=3) as h:
        for i in range(7):
            h.record("a", result(i))
        h.record("b", result(0))
    assert stored(path) == [("a", 5), ("a", 6), ("a", 7), ("b", 1)]
    old = time.time() - 3 * 86400
    with opened(path, per_target=3, retention=86400) as h:
        h.record("c", result(0, started_at=old))
        h.record("c", result(1))
        wait_until(lambda: len(stored(path)) == 5, 10, "the old run to go")
        assert [s.run for s in h.summaries("c")] == [2]
        h.resize(2, 86400)  # a reload that shrinks the history: the pages show the newest two at once
        assert [s.run for s in h.summaries("a")] == [7, 6]


def test_an_older_schema_is_migrated_in_place(tmp_path):
    """Every earlier version of the file (user_version 0 .. SCHEMA_VERSION-1) is brought up to date, its runs kept."""
    for version in range(SCHEMA_VERSION):
        path = tmp_path / f"v{version}.db"
        with contextlib.closing(sqlite3.connect(path)) as db:
            for step in MIGRATIONS[:version]:
                db.executescript(step)
            db.execute(f"PRAGMA user_version = {version}")
            if version:
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.commit()
        with opened(path) as h:
            assert h.up and h.record("t", result()).run == 1
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert stored(path) == [("t", 1)]


@pytest.mark.parametrize("content", [b"this is not a database, it is a text file\n" * 100,
                                     b"SQLite format 3\x00" + os.urandom(4096)])
def test_a_corrupt_file_is_moved_aside_and_a_fresh_one_started(tmp_path, content):
    path = tmp_path / "h.db"
    path.write_bytes(content)
    m = metrics()
    with opened(path, m=m) as h:
        assert h.record("t", result()).run == 1
        wait_until(lambda: h.up, 5, "a fresh file")
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("h.db.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == content  # renamed, never deleted
    assert stored(path) == [("t", 1)] and sample(m, "sse_monitor_storage_up") == 1
    assert sample(m, "sse_monitor_storage_errors_total", operation="open") == 1


def test_someone_elses_database_is_moved_aside_not_written_into(tmp_path):
    path = tmp_path / "h.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
        db.execute("INSERT INTO invoices VALUES (42)")
        db.commit()
    with opened(path) as h:
        h.record("t", result())
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("h.db.corrupt-") and not p.name.endswith("-wal")]
    with contextlib.closing(sqlite3.connect(aside)) as db:
        assert db.execute("SELECT id FROM invoices").fetchall() == [(42,)]
    assert stored(path) == [("t", 1)]


def test_a_newer_schema_is_left_alone_and_runs_wait_in_memory(tmp_path, capsys):
    path = tmp_path / "h.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(MIGRATIONS[0])
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.commit()
    before = path.read_bytes()
    m = metrics()
    with opened(path, m=m) as h:
        numbers = [h.record("t", result(i)).run for i in range(3)]
        time.sleep(1.0)
        assert not h.up and sample(m, "sse_monitor_storage_up") == 0
        assert "newer than this sse-monitor knows" in h.fault
        assert [s.run for s in h.summaries("t")] == [3, 2, 1]  # the pages still show them
        assert h.run("t", 2).result.ttft_seconds == pytest.approx(0.251)
        assert path.read_bytes() == before  # not migrated, not moved aside
        path.unlink()  # the operator deals with it: the runs that waited are written
        wait_until(lambda: h.up, 5, "recovery")
        wait_until(lambda: len(stored(path)) == 3, 5, "the waiting runs")
    assert numbers == [1, 2, 3] and stored(path) == [("t", 1), ("t", 2), ("t", 3)]
    logged = capsys.readouterr().out
    assert logged.count("storage_failed") == 1 and "storage_recovered" in logged and "Traceback" not in logged


def test_a_second_monitor_on_the_same_file_waits_for_it_and_numbers_after_its_runs(tmp_path):
    path = tmp_path / "h.db"
    first, second = metrics(), metrics()
    with opened(path, m=first) as a:
        for i in range(3):
            a.record("t", result(i))
        with opened(path, m=second) as b:
            b.record("t", result(9))
            time.sleep(1.0)
            assert sample(second, "sse_monitor_storage_up") == 0 and "locked" in b.fault
            assert sample(first, "sse_monitor_storage_up") == 1
            a.stop()  # the first one goes away: the second takes the file over
            wait_until(lambda: b.up, 5, "the second monitor to take the file")
            wait_until(lambda: len(stored(path)) == 4, 5, "its waiting run")
            assert b.record("t", result(10)).run == 5
    assert stored(path) == [("t", n) for n in range(1, 6)]  # its run waited, then came after the first's 1-3


def test_a_directory_that_cannot_be_made_only_delays_the_file(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data directory should be")
    m = metrics()
    with opened(blocker / "h.db", m=m) as h:
        h.record("t", result())
        assert not h.up and sample(m, "sse_monitor_storage_errors_total", operation="open") >= 1
        blocker.unlink()
        wait_until(lambda: h.up, 5, "the directory to be made")
        wait_until(lambda: stored(blocker / "h.db") == [("t", 1)], 5, "the waiting run")


@contextlib.contextmanager
def tmpfs(where: Path, size: str):
    where.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                           text=True)
    if mount.returncode != 0:
        message = f"cannot mount a tmpfs here ({mount.stderr.strip()}): run the tests as root"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_filesystem_keeps_runs_waiting_then_writes_them_when_space_comes_back(tmp_path):
    with tmpfs(tmp_path / "small", "192k") as small:
        path = small / "h.db"
        m = metrics()
        with opened(path, m=m) as h:
            filler = small / "filler"
            filler.write_bytes(b"\0" * (small.stat().st_blksize * 4))
            n = 0
            deadline = time.monotonic() + 30
            while h.up and time.monotonic() < deadline:  # fill the disk with runs until a write fails
                for _ in range(50):
                    n += 1
                    h.record(f"t{n % 7}", result(n, tokens=400))
                time.sleep(0.3)
            assert not h.up and sample(m, "sse_monitor_storage_errors_total", operation="write") >= 1
            assert "full" in h.fault
            more = [h.record("t0", result(0)).run for _ in range(5)]  # probing goes on
            subprocess.run(["mount", "-o", "remount,size=16m", str(small)], check=True)
            wait_until(lambda: h.up, 10, "recovery")
            wait_until(lambda: not h._unwritten and not h._queued, 10, "the waiting runs")
        rows = stored(path)
        assert len(rows) == n + 5 and ("t0", more[-1]) in rows
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_read_only_filesystem_keeps_runs_waiting_until_it_is_writable(tmp_path):
    with tmpfs(tmp_path / "ro", "4m") as where:
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        m = metrics()
        with opened(where / "h.db", m=m) as h:
            h.record("t", result(1))
            time.sleep(0.5)
            assert not h.up and sample(m, "sse_monitor_storage_up") == 0 and "Read-only" in h.fault
            assert [s.run for s in h.summaries("t")] == [1]  # the pages show it from memory
            subprocess.run(["mount", "-o", "remount,rw", str(where)], check=True)
            wait_until(lambda: h.up, 5, "recovery")
            h.record("t", result(2))
            wait_until(lambda: stored(where / "h.db") == [("t", 1), ("t", 2)], 5, "the runs")


def test_the_daemon_probes_and_pages_while_its_history_file_is_unusable(simulator, tmp_path):
    """A real daemon on a file of a newer schema: probing, metrics and pages go on; the metrics say storage is down."""
    data = tmp_path / "data"
    data.mkdir()
    with contextlib.closing(sqlite3.connect(data / "sse-monitor.db")) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("CREATE TABLE future (x)")
        db.commit()
    url = f"{simulator}/v1/chat/completions?ttft=0.02&tokens=5&rate=200"
    text = (f"storage: {{path: \"{data / 'sse-monitor.db'}\"}}\nscheduler: {{jitter: 0s}}\ntargets:\n"
            f"  - {{name: chat, url: \"{url}\", interval: 1h, timeout: 10s, idle_timeout: 5s}}\n")

    async def scenario():
        async with running_daemon(text, tmp_path) as (daemon, client):
            for _ in range(2):
                await daemon._run_target("chat")
            metrics_text = (await client.get("/metrics")).text
            page = (await client.get("/targets/chat")).text
            return metrics_text, page

    metrics_text, page = asyncio.run(scenario())
    assert 'sse_probe_runs_total{outcome="completed",reason="ok",target="chat"} 2.0' in metrics_text
    assert "sse_monitor_storage_up 0.0" in metrics_text
    assert 'sse_monitor_storage_errors_total{operation="open"}' in metrics_text
    assert "run 2 (the last)" in page and "<a href='?run=1'>1</a>" in page


# ---- the real process -------------------------------------------------------------------------------------------------


def busy_config(simulator: str, targets: int = 12) -> str:
    url = f"{simulator}/v1/chat/completions?ttft=0.02&tokens=20&rate=400"
    lines = ["scheduler: {jitter: 0s}\ntargets:\n"]
    lines += [f"  - {{name: t{i}, url: \"{url}\", interval: 0.5s, timeout: 10s, idle_timeout: 5s}}\n"
              for i in range(targets)]
    return "".join(lines)


def finished_runs(daemon) -> dict[tuple[str, int], float]:
    """(target, run) -> when it finished (unix time), from the daemon's probe_finished log lines."""
    return {(e["target"], e["run"]): e["started_at"] + e["duration_seconds"]
            for e in daemon.log_events() if e.get("event") == "probe_finished"}


def test_a_restart_keeps_the_history_and_numbering(simulator, tmp_path):
    from servers import DaemonProcess

    data = tmp_path / "data"
    env = {"SSE_MONITOR_DATA_DIR": str(data)}
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    first = DaemonProcess(busy_config(simulator, 2), tmp_path / "first", env=env)
    try:
        wait_until(lambda: first.runs("t0") >= 3, 15, "three runs")
    finally:
        assert first.stop() == 0
    before = {key for key in finished_runs(first) if key[0] == "t0"}
    second = DaemonProcess(busy_config(simulator, 2), tmp_path / "second", env=env)
    try:
        wait_until(lambda: second.runs("t0") >= 1, 15, "a run after the restart")
        history = second.get("/api/v1/targets/t0/history").json()
        page = second.get(f"/targets/t0?run={min(n for _, n in before)}")
        landing = second.get("/").text
    finally:
        second.stop()
    numbers = [h["run"] for h in history]
    assert {("t0", n) for n in numbers} >= before  # every run of the first process is there
    assert max(numbers) > max(n for _, n in before)  # and the new ones count on from them
    assert page.status_code == 200 and "<div class=timeline><svg" in page.text
    assert f'data-runs="{len(numbers)}"' in landing or f'data-runs="{len(numbers) + 1}"' in landing


def test_kill_9_at_random_moments_loses_no_finished_run(simulator, tmp_path):
    """The real daemon under load (12 targets, ~20 runs a second), killed with SIGKILL at random moments, six times in a
    row: each time, every run that finished more than 1 s before the kill is in the file, the file passes
    PRAGMA integrity_check, and numbering continues after the restart from the file's last run."""
    import random
    import signal

    from servers import DaemonProcess

    data = tmp_path / "data"
    env = {"SSE_MONITOR_DATA_DIR": str(data)}
    rng = random.Random(1234)
    highest: dict[str, int] = {}
    for cycle in range(6):
        (tmp_path / f"cycle{cycle}").mkdir()
        daemon = DaemonProcess(busy_config(simulator), tmp_path / f"cycle{cycle}", env=env)
        try:
            time.sleep(rng.uniform(1.5, 3.5))
            killed_at = time.time()
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait(10)
        finally:
            daemon.stop()
        finished = finished_runs(daemon)
        due = {key for key, at in finished.items() if at < killed_at - 1.0}
        assert len(due) >= 10, f"cycle {cycle}: too few runs to judge ({len(finished)})"
        with contextlib.closing(sqlite3.connect(data / "sse-monitor.db")) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            kept = set(db.execute("SELECT target, run FROM runs").fetchall())
        assert due <= kept, f"cycle {cycle}: lost {sorted(due - kept)[:10]}"
        firsts: dict[str, int] = {}
        for target, number in finished:
            firsts[target] = min(firsts.get(target, number), number)
        # numbering goes on from the last run in the file (a run lost in the last moment before a kill is not there)
        assert firsts == {t: highest.get(t, 0) + 1 for t in firsts}, f"cycle {cycle}"
        for target, number in kept:
            highest[target] = max(highest.get(target, 0), number)


def test_a_damaged_run_costs_only_itself(tmp_path):
    path = tmp_path / "h.db"
    m = metrics()
    with opened(path) as h:
        for i in range(3):
            h.record("t", result(i))
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("UPDATE runs SET result = x'00112233' WHERE run = 2")
        db.commit()
    with opened(path, m=m) as h:
        assert [r.run for r in h.runs("t")] == [3, 1] and h.run("t", 2) is None
        assert [s.run for s in h.summaries("t")] == [3, 2, 1]  # its row is listed; only its page is gone
        assert sample(m, "sse_monitor_storage_errors_total", operation="read") == 2
