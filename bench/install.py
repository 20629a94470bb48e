"""Installing sse-monitor as the README does, and describing what is measured: the install, the code, the machine."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from processes import clean_env, say
from workload import ROOT, RUN_DIR, VENV


def install(opts: argparse.Namespace) -> None:
    python3 = shutil.which("python3") or sys.executable
    if not (VENV / "bin" / "python").exists():
        say(f"creating {VENV.relative_to(ROOT)} with `{python3} -m venv` ...")
        subprocess.run([python3, "-m", "venv", str(VENV)], check=True)
    what = f".[{opts.extras}]" if opts.extras else "."
    say(f"installing sse-monitor into it: `python3 -m pip install {what}` (not editable) ...")
    t = time.monotonic()
    proc = subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", what], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"pip install failed:\n{proc.stdout}\n{proc.stderr}")
    say(f"  installed in {time.monotonic() - t:.0f} s")


def resolve_python(opts: argparse.Namespace) -> str:
    if opts.python:
        path = Path(os.path.abspath(opts.python))  # absolute, not resolved: a venv's python is a symlink out of it
        if path.is_dir():
            path = path / "bin" / "python"
        if not path.exists():
            raise SystemExit(f"--python: {opts.python} is neither an interpreter nor a venv")
        return str(path)
    python = VENV / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} does not exist: run without --no-install first")
    return str(python)


def daemon_command(python: str) -> list[str]:
    script = Path(python).parent / "sse-monitor"  # the console script pip installed beside the interpreter
    return [str(script)] if script.exists() else [python, "-m", "monitor.cli"]


def describe_install(python: str) -> dict:
    code = r"""
import importlib.util, json, platform, sys
from importlib.metadata import version, PackageNotFoundError
import monitor
out = {"python": platform.python_version(), "executable": sys.executable, "monitor_file": monitor.__file__,
       "uvloop": importlib.util.find_spec("uvloop") is not None}
for name in ("sse-monitor", "httpx", "httpcore", "h11", "uvicorn", "starlette", "structlog", "apscheduler",
             "prometheus-client", "pydantic", "uvloop"):
    try:
        out[name] = version(name)
    except PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([python, "-c", code], cwd=RUN_DIR, env=clean_env(), capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"{python} cannot import the monitor package:\n{proc.stderr}")
    info = json.loads(proc.stdout)
    installed = Path(info["monitor_file"]).parent
    info["editable_or_source_tree"] = installed.resolve() == (ROOT / "monitor").resolve()
    same = []
    for src in sorted((ROOT / "monitor").glob("*.py")):
        dst = installed / src.name
        if not dst.exists() or hashlib.sha256(dst.read_bytes()).digest() != hashlib.sha256(src.read_bytes()).digest():
            same.append(src.name)
    info["differs_from_work_tree"] = same  # files of this tree's monitor/ the measured install does not have as is
    return info


def code_state() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "describe": git("describe", "--always", "--dirty"),
            "uncommitted": git("status", "--porcelain", "--", "monitor", "pyproject.toml").splitlines()}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine() -> dict:
    return {"cpu_model": cpu_model(), "cores": os.cpu_count(), "kernel": platform.release(),
            "bench_python": platform.python_version(), "load_average_at_start": list(os.getloadavg()),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


_WAKEUP_PROBE = """
import asyncio, json, sys, time
try:
    import uvloop
    run = uvloop.run
except ImportError:
    run = asyncio.run
async def main():
    out = {}
    for period in (0.002, 0.02):  # (shorter than uvloop's whole-ms timers would not sleep at all)
        n = int(1.0 / period)
        c0 = time.process_time()
        for _ in range(n):
            await asyncio.sleep(period)
        out[f"{period * 1000:g}ms"] = round((time.process_time() - c0) / n * 1e6, 1)
    print(json.dumps(out))
run(main())
"""


def wakeup_cost(python: str, core: int | None) -> dict:
    """The CPU that one wake-up of an idle event loop costs on this machine (a bare sleep loop, nothing else), at a
    few sleep lengths, on the monitor's core: the floor under every figure per event or per probe (on this 2-core VM
    37-190 us, measured)."""
    preexec = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    try:
        out = subprocess.run([python, "-c", _WAKEUP_PROBE], capture_output=True, text=True, timeout=30,
                             preexec_fn=preexec, check=True).stdout
        return {"cpu_us_per_wakeup_by_sleep": json.loads(out)}
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return {"error": str(exc)}
