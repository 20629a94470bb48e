"""The processes a pass runs and measures: pinned to a core, read in /proc, stopped; the simulator and the daemon."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from workload import ROOT, RUN_DIR


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def clean_env() -> dict[str, str]:
    """The environment of a plain shell: no proxies (only loopback is contacted), nothing that changes imports."""
    drop = {"PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONHOME", "PYTHONSTARTUP"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.lower().endswith("_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def pinned(core: int | None):
    """preexec_fn: the child is on its core from its first instruction (Go then sizes GOMAXPROCS to it)."""
    def pre() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})
    return pre


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def core_busy(cores: list[int]) -> dict[int, float]:
    """Busy seconds of each core since boot, from /proc/stat (everything but idle and iowait)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name = line.split(" ", 1)[0]
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            fields = [int(x) for x in line.split()[1:]]
            out[int(name[3:])] = (sum(fields[:8]) - fields[3] - fields[4]) / tick
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, grace: float = 20.0) -> int | None:
    """SIGTERM, then SIGKILL after `grace` seconds; the exit status (None if it had to be killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None
    return proc.returncode


def sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.5))


class Simulator:
    """This tree's simulator (the benchmark's instrument, not the measured code), pinned, with a truth log."""

    def __init__(self, python: str, core: int | None, truth: Path, stderr: Path) -> None:
        truth.unlink(missing_ok=True)
        self.truth = truth
        self._err = open(stderr, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [python, "-m", "monitor.simulator", "--host", "127.0.0.1", "--port", "0", "--truth-log", str(truth)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self._err, text=True, env=clean_env(), preexec_fn=pinned(core))
        line = self.proc.stdout.readline()  # "sse-monitor simulator listening on http://127.0.0.1:PORT"
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"the simulator did not start: {line!r} (see {stderr})")
        self.base_url = line.rsplit(" ", 1)[1].strip()

    def stop(self) -> None:
        stop(self.proc, 15)
        self._err.close()


class DaemonProcess:
    """`sse-monitor run --config FILE` as users run it; stdout (its JSON log) and stderr to files."""

    def __init__(self, cmd: list[str], core: int | None, config: Path, log: Path, err: Path) -> None:
        self.log = log
        self._out, self._err = open(log, "wb"), open(err, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([*cmd, "run", "--config", str(config)], cwd=RUN_DIR, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err, env=clean_env(), preexec_fn=pinned(core))
        self.pid = self.proc.pid

    def wait_started(self, timeout: float) -> str:
        """The base URL from the daemon's `started` log line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with status {self.proc.returncode} (see {self._err.name})")
            with open(self.log, "rb") as f:
                for line in f:
                    if b'"started"' in line:
                        try:
                            obj = json.loads(line)
                        except ValueError:
                            continue
                        if obj.get("event") == "started":
                            return str(obj.get("listen", ""))
            time.sleep(0.1)
        raise RuntimeError(f"no `started` log line from the daemon within {timeout:g} s (see {self.log})")

    def stop(self) -> int | None:
        status = stop(self.proc, 20)
        self._out.close()
        self._err.close()
        return status


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy: loopback only
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with status {proc.returncode}")
        try:
            with opener.open(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")
