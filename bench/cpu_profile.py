"""Where the daemon's CPU goes: `py-spy record` on the running `sse-monitor run` over a level's window.

`bench/process.py --profile DIR` starts py-spy on the daemon's pid when the window opens and stops it when it closes.
py-spy samples the process from outside (it reads the interpreter's memory; the daemon is not paused with
--nonblocking and runs no profiling code of its own), on the simulator's core, so the figures of the window stay those
of the real process. The samples are written as collapsed stacks (`py-spy record --format raw`: one line per stack,
`frame;frame;... count`), which speedscope.app and flamegraph.pl read; `summary()` lists the functions that hold the
most samples, by their own time and with what they call.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
from pathlib import Path

RATE = 250  # samples a second: enough for a 10-30 s window, light for the sampler


def find_py_spy() -> str | None:
    return shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    """py-spy recording `pid` for `seconds` into `out` (collapsed stacks), idle frames left out."""
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [find_py_spy() or "py-spy", "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
               "--rate", str(RATE), "--format", "raw", "--nonblocking", "--gil", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, out: Path, timeout: float = 60.0) -> dict:
    """Wait for py-spy; the profile's file and its summary, or why there is none."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if not out.exists():
        return {"profile": None, "why": (err or b"").decode("utf-8", "replace").strip()[-300:]}
    return {"profile": str(out), **summary(out.read_text())}


def _function(frame: str) -> str:
    """`name (path/to/module.py:LINE)` -> `name (module.py)`: one entry a function, not a line."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    marker = "site-packages/"
    where = where.split(marker, 1)[1] if marker in where else where.rsplit("/", 1)[-1]
    return f"{name} ({where})" if where else name


def summary(collapsed: str, top: int = 25) -> dict:
    """The functions with the most samples: own (the frame on top) and total (anywhere on the stack), in shares."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_function(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += n
        own[frames[-1]] += n
        for name in set(frames):
            total[name] += n
    share = (lambda n: round(n / samples, 4)) if samples else (lambda n: 0.0)
    return {"samples": samples,
            "own": [[name, share(n)] for name, n in own.most_common(top)],
            "total": [[name, share(n)] for name, n in total.most_common(top)]}
