"""Which replica probes which target: rendezvous (highest-random-weight) hashing of the target's name.

Every replica reads the same configuration and keeps the targets whose name hashes highest for its own index, so
each target is probed by exactly one replica, with no coordination; going from N to N+1 replicas moves only the
targets the new replica now wins (about 1/(N+1) of them).
"""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass

ENV_SHARD = "SSE_MONITOR_SHARD"
_SHARD = re.compile(r"^\s*(auto|\d+)\s*/\s*(\d+)\s*$")
_ORDINAL = re.compile(r"-(\d+)$")


def _weight(index: int, name: str) -> int:
    digest = hashlib.blake2b(f"{index}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(name: str, count: int) -> int:
    """The index (0-based) of the replica, out of `count`, that probes the target `name`."""
    return max(range(count), key=lambda index: _weight(index, name))


@dataclass(frozen=True)
class Shard:
    """This replica's place: index K of N (0 <= K < N)."""

    index: int = 0
    count: int = 1

    def owns(self, name: str) -> bool:
        return self.count == 1 or owner(name, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


ALL = Shard()


def parse_shard(text: str, hostname: str | None = None) -> Shard:
    """`K/N`, or `auto/N` for the ordinal at the end of the host name (a StatefulSet's pod `sse-monitor-2` is 2).
    Raises ValueError with what was expected."""
    match = _SHARD.match(text)
    if not match:
        raise ValueError(f"expected K/N (e.g. 0/3) or auto/N, got {text!r}")
    count = int(match.group(2))
    if count < 1:
        raise ValueError(f"expected at least 1 shard, got {text!r}")
    if match.group(1) == "auto":
        hostname = hostname if hostname is not None else socket.gethostname()
        ordinal = _ORDINAL.search(hostname)
        if not ordinal:
            raise ValueError(f"auto/{count} takes the number at the end of the host name (a StatefulSet pod's, like "
                             f"sse-monitor-2), but the host name is {hostname!r}")
        index = int(ordinal.group(1))
    else:
        index = int(match.group(1))
    if index >= count:
        raise ValueError(f"expected a shard index below {count}, got {index} (from {text!r})")
    return Shard(index, count)
