"""Where the daemon's CPU goes: `py-spy record` on the running `sse-monitor run` over a level's window.

`bench/process.py --profile DIR` starts py-spy on the daemon's pid when the window opens and stops it when it closes.
py-spy samples the process from outside (it reads the interpreter's memory; the daemon is not paused with
--nonblocking and runs no profiling code of its own), on the simulator's core, so the figures of the window stay those
of the real process. The samples are written as collapsed stacks (`py-spy record --format raw`: one line per stack,
`frame;frame;... count`), which speedscope.app and flamegraph.pl read; `summary()` lists the functions that hold the
most samples, by their own time and with what they call.

py-spy sees Python frames only: time in the interpreter's own C code, in uvloop and in the kernel shows up under
whichever Python frame is on top (`Runner.run` for the loop). When `perf` is on PATH, `perf record` samples the same
window by the object each sample's instruction belongs to (`perf_start`/`perf_finish`): the interpreter
(libpython), the kernel, uvloop, other C extensions and libc. The interpreter's share is what running the read path
as compiled code instead of Python would remove at most.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
from pathlib import Path

RATE = 250  # samples a second: enough for a 10-30 s window, light for the sampler
PERF_RATE = 499  # perf's samples a second (a prime: not in step with the daemon's timers)


def find_py_spy() -> str | None:
    return shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    """py-spy recording `pid` for `seconds` into `out` (collapsed stacks), idle frames left out."""
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [find_py_spy() or "py-spy", "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
               "--rate", str(RATE), "--format", "raw", "--nonblocking", "--gil", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait(proc: subprocess.Popen, out: Path, timeout: float) -> str | None:
    """Wait for a sampler (killed past `timeout`); None when it wrote `out`, else why not (the end of its stderr)."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return None if out.exists() else (err or b"").decode("utf-8", "replace").strip()[-300:]


def finish(proc: subprocess.Popen, out: Path, timeout: float = 60.0) -> dict:
    """Wait for py-spy; the profile's file and its summary, or why there is none."""
    why = _wait(proc, out, timeout)
    if why is not None:
        return {"profile": None, "why": why}
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


def find_perf() -> str | None:
    return shutil.which("perf")


def perf_start(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    """`perf record` on `pid` (all its threads) for `seconds`, into `out` (perf.data), without call graphs."""
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [find_perf() or "perf", "record", "--freq", str(PERF_RATE), "--pid", str(pid), "--output", str(out),
               "--quiet", "--", "sleep", str(max(1, round(seconds)))]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def perf_finish(proc: subprocess.Popen, out: Path, timeout: float = 60.0) -> dict:
    """Wait for perf; the window's samples by part of the machine (`parts`) and by object, or why there are none."""
    why = _wait(proc, out, timeout)
    if why is not None:
        return {"perf_data": None, "why": why}
    report = subprocess.run([find_perf() or "perf", "report", "--input", str(out), "--stdio", "--sort", "dso",
                             "--no-children", "-g", "none", "--percent-limit", "0", "--show-nr-samples"],
                            capture_output=True, text=True, timeout=timeout, check=False)
    return {"perf_data": str(out), **machine_split(report.stdout)}


PARTS = (  # (part, what an object's name starts with), first match wins
    ("interpreter", ("libpython", "python")),
    ("kernel", ("[kernel", "[vdso]")),
    ("uvloop", ("loop.cpython", "libuv")),
    ("libc", ("libc.", "libm.", "ld-linux", "libpthread")),
)


def _part(dso: str) -> str:
    for part, prefixes in PARTS:
        if dso.startswith(prefixes):
            return part
    return "C extensions" if ".cpython-" in dso or dso.endswith(".so") or ".so." in dso else "other"


def machine_split(report: str) -> dict:
    """`perf report --sort dso --stdio --show-nr-samples` read: the samples, and their shares by part (interpreter,
    kernel, uvloop, libc, C extensions, other) and by object."""
    objects: list[list] = []
    parts: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in report.splitlines():
        found = re.match(r"\s*([\d.]+)%\s+(\d+)\s+(\S.*?)\s*$", line)
        if found:
            share, dso = float(found[1]) / 100, found[3]
            samples += int(found[2])
            objects.append([dso, round(share, 4)])
            parts[_part(dso)] += share
    return {"perf_samples": samples,
            "parts": {part: round(share, 4) for part, share in parts.most_common()},
            "objects": objects[:12]}
