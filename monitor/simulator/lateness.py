"""The simulator's own lateness: how long after its due time each token event was handed to the socket."""

from __future__ import annotations

import math
import time
from typing import Any

BUCKET_SECONDS = 1e-5  # the histogram's resolution: 10 µs
LOWEST, HIGHEST = -1_000, 100_000  # buckets kept, -10 ms to +1 s; an event outside counts in the end one


class Lateness:
    """A histogram of token events' lateness (sent minus due, on time.monotonic(); negative: early), cumulative since
    the simulator started, so that a reader can subtract two readings to get a window's (`window()`)."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.max = -math.inf

    def add(self, late: float) -> None:
        i = min(max(math.floor(late / BUCKET_SECONDS), LOWEST), HIGHEST)
        self.counts[i] = self.counts.get(i, 0) + 1
        if late > self.max:
            self.max = late

    def reading(self) -> dict[str, Any]:
        """What GET /-/lateness answers: the counts by bucket, and the summary of all of them."""
        counts = {str(i): n for i, n in sorted(self.counts.items())}
        return {"bucket_seconds": BUCKET_SECONDS, "counts": counts, **summary(counts),
                "max_seconds": None if self.max == -math.inf else self.max}


class Paced:
    """One stream's link between its timeline and its sender: the due time of the token chunk on its way out."""

    __slots__ = ("lateness", "due")

    def __init__(self, lateness: Lateness) -> None:
        self.lateness = lateness
        self.due: float | None = None

    def sent(self) -> None:
        """The chunk just went to the socket: its lateness, if it carried a token."""
        if self.due is not None:
            self.lateness.add(time.monotonic() - self.due)
            self.due = None


def window(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """The counts by bucket between two readings of GET /-/lateness."""
    old = before["counts"]
    counts = {i: n - old.get(i, 0) for i, n in after["counts"].items()}
    return {i: n for i, n in counts.items() if n > 0}


def summary(counts: dict[str, int]) -> dict[str, Any]:
    """Events, early ones, and p50/p99/max of a histogram, each quantile as its bucket's upper edge (seconds)."""
    buckets = sorted((int(i), n) for i, n in counts.items())
    total = sum(n for _, n in buckets)
    out: dict[str, Any] = {"events": total, "early": sum(n for i, n in buckets if i < 0)}
    for name, q in (("p50_seconds", 0.5), ("p99_seconds", 0.99), ("top_seconds", 1.0)):
        out[name] = _quantile(buckets, total, q)
    return out


def _quantile(buckets: list[tuple[int, int]], total: int, q: float) -> float | None:
    seen = 0
    for i, n in buckets:
        seen += n
        if seen >= q * total:
            return round((i + 1) * BUCKET_SECONDS, 6)
    return None
