"""The simulator's own lateness (GET /-/lateness): every token event counted, none early, many streams kept on time."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from monitor.simulator import DIALECT_PATHS
from monitor.simulator.lateness import BUCKET_SECONDS, Lateness, summary, window

ROOT = Path(__file__).resolve().parent.parent
STREAMS, TOKENS, RATE = 40, 8, 20.0


@pytest.fixture
def simulator() -> Iterator[str]:
    """A fresh `python -m monitor.simulator --port 0`, so that its lateness counts only this test's streams."""
    proc = subprocess.Popen([sys.executable, "-m", "monitor.simulator", "--port", "0"], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    match = re.fullmatch(r"sse-monitor simulator listening on (http://127\.0\.0\.1:\d+)\n", proc.stdout.readline())
    if not match:
        proc.kill()
        pytest.fail("the simulator did not start")
    yield match.group(1)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


async def _token_times(client: httpx.AsyncClient, base: str) -> list[float]:
    """The `sim_sent` of each token event of one generic stream."""
    query = f"ttft=0.2&tokens={TOKENS}&rate={RATE}"
    body = (await client.get(f"{base}{DIALECT_PATHS['generic']}?{query}")).text
    events = [json.loads(line[len("data: "):]) for line in body.splitlines() if line.startswith("data: ")]
    return [e["sim_sent"] for e in events if "token" in e]


async def _streams_and_readings(base: str) -> tuple[list[list[float]], dict, dict]:
    async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=STREAMS + 1)) as client:
        before = (await client.get(f"{base}/-/lateness")).json()
        streams = await asyncio.gather(*(_token_times(client, base) for _ in range(STREAMS)))
        after = (await client.get(f"{base}/-/lateness")).json()
    return list(streams), before, after


def test_concurrent_streams_keep_their_rate_and_every_token_is_counted_never_early(simulator: str) -> None:
    streams, before, after = asyncio.run(_streams_and_readings(simulator))
    for sent in streams:  # one timer serves every stream's deadlines: each keeps its own absolute schedule
        assert len(sent) == TOKENS
        for i, t in enumerate(sent):
            assert t - sent[0] == pytest.approx(i / RATE, abs=0.02)
    late = summary(window(before, after))
    assert late["events"] == STREAMS * TOKENS and late["early"] == 0  # a token never goes out before it is due
    assert 0 < late["p50_seconds"] <= late["p99_seconds"] <= late["top_seconds"]
    assert after["events"] == STREAMS * TOKENS and after["max_seconds"] <= after["top_seconds"]


def test_a_window_between_two_readings_counts_only_what_happened_in_it() -> None:
    lateness = Lateness()
    for late in (0.0003, 0.0003, 0.004):
        lateness.add(late)
    before = json.loads(json.dumps(lateness.reading()))  # as a reader gets it over HTTP
    for late in [0.0001] * 98 + [0.0015, 0.002, -0.0002]:
        lateness.add(late)
    late = summary(window(before, lateness.reading()))
    assert late["events"] == 101 and late["early"] == 1
    assert late["p50_seconds"] == pytest.approx(0.0001 + BUCKET_SECONDS)  # each quantile: its bucket's upper edge
    assert late["p99_seconds"] == pytest.approx(0.0015 + BUCKET_SECONDS)
    assert late["top_seconds"] == pytest.approx(0.002 + BUCKET_SECONDS)
    assert lateness.reading()["max_seconds"] == 0.004  # the largest since the start, not the window's
