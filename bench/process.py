"""The process users run, measured: `sse-monitor run`, installed with pip, probing the simulator on loopback.

    python3 bench/process.py --quick     # <= 3 minutes: 200 and 1,000 streams, the flood, blackbox alone at 200,
                                         # the daemon and blackbox side by side at 200
    python3 bench/process.py             # <= 15 minutes: 50, 200, 500, 1,000 streams, 230 targets at the default
                                         # cap, the flood; blackbox_exporter alone at 50, 200, 500 and 1,000;
                                         # side by side at 200 and 1,000

Installs sse-monitor as the README does (`python3 -m pip install .`, not editable) into a venv in bench/out/venv,
then for each level starts the simulator (`python -m monitor.simulator --truth-log FILE`, this tree's) pinned to one
core and the installed `sse-monitor run --config FILE` pinned to the other, at default niceness, with the daemon's
own JSON log on stdout captured to a file. Every TTFT the daemon logs (`probe_finished`) is paired with the
simulator's record of the same request (same target, received just after the probe's `started_at`) and compared:

    TTFT error     = ttft_seconds - (first_token_written - request_received)     (the issue's definition)
    arrival error  = (started_at + ttft_seconds) - first_token_written          (~ loopback transit only)

blackbox_exporter (Debian's prometheus-blackbox-exporter), when installed, probes the same origin at the same
concurrency on the same core, twice: alone, in a pass of its own; and side by side, started together with the daemon
on the same core against one simulator, each with its own set of the level's targets (every request's `tag` says
whose it is) over the same window. Its TTFB (resolve + connect + tls + processing) is compared with the simulator's
record of the same request the same way; the issue's "blackbox p99 >= 10 x ours at 200 streams in the same run" is
evaluated on the side-by-side pass. Prints a table and writes bench/results-process.json; see
bench/README.md. Linux only (/proc, sched_setaffinity), two cores or more. Every load loop is bounded in count and
time; only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import contextlib
import datetime
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"  # git-ignored scratch
VENV = OUT / "venv"
RUN_DIR = OUT / "process"  # this run's configs, daemon logs and truth logs (overwritten by the next run)
RESULTS = HERE / "results-process.json"
PATH = "/v1/chat/completions"

sys.path.insert(0, str(ROOT))
from monitor.config import DEFAULT_MAX_CONCURRENT as DEFAULT_CAP  # noqa: E402 - scheduler.max_concurrent's default
DEFAULT_JITTER = 5.0  # scheduler.jitter's default
CAP_TARGETS = 230  # the "default cap" level: as many targets as the 200-stream level, max_concurrent left alone
FLOOD_HEALTHY = 20  # the flood level: this many healthy targets beside one flooding target
FLOOD_QUERY = "endless=1&rate=1000000000"  # valid events, as fast as the simulator makes them, never ending
LAG = "event_loop_lag"

TARGETS = {  # the targets: (figure, comparison, limit)
    "ttft_error_p99_ms_at_200": ("<=", 2.0),
    "ttft_error_p99_ms_at_1000": ("<=", 5.0),
    "flood_healthy_ttft_error_p99_ms": ("<=", 2.0),
    "blackbox_p99_over_ours_at_200": (">=", 10.0),
    "cpu_us_per_event_at_200": ("<=", 60.0),
    "peak_rss_mb_at_1000": ("<=", 150.0),
    "steady_rss_mb_at_1000_targets": ("<=", 150.0),  # every target's history full (the steady level)
    "steady_rss_growth_mb_per_hour": ("<=", 1.0),
}


# ---- small helpers -------------------------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def summary_ms(values: list[float]) -> dict:
    """n, p50, p99, max and min of seconds, in ms."""
    def ms(x: float | None) -> float | None:
        return None if x is None else round(x * 1000, 3)

    return {"n": len(values), "p50_ms": ms(percentile(values, 50)), "p99_ms": ms(percentile(values, 99)),
            "max_ms": ms(max(values) if values else None), "min_ms": ms(min(values) if values else None)}


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


def first_run_offset(name: str, interval: float) -> float:
    """Where in its first interval the daemon starts a target (monitor.scheduler.first_run_offset)."""
    return (zlib.crc32(name.encode()) / 2**32) * interval


# ---- the workload --------------------------------------------------------------------------------------------------


class Workload:
    """OpenAI-chat streams: first token after `ttft`, then `rate` token events per second; targets every `interval`."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.ttft, self.tokens, self.rate, self.interval = opts.ttft, opts.tokens, opts.rate, opts.interval
        self.jitter = opts.jitter
        self.stream_seconds = self.ttft + (self.tokens - 1) / self.rate  # request to the last token
        self.events_per_stream = self.tokens + 4  # the role chunk, the tokens, the finish chunk, usage, [DONE]
        self.query = f"ttft={self.ttft:g}&tokens={self.tokens}&rate={self.rate:g}"

    def targets_for(self, streams: int) -> int:
        """Targets on `interval` that keep `streams` streams open on average."""
        return max(1, round(streams * self.interval / self.stream_seconds))


def level_spec(name: str, w: Workload) -> dict:
    """'200' (streams), 'cap' / 'cap:230' (targets at the default max_concurrent), 'flood' / 'flood:20',
    'steady' / 'steady:1000' (targets with full history: bench/steady.py)."""
    kind, _, n = name.partition(":")
    if kind == "steady":
        from steady import steady_spec
        return steady_spec(name, w)
    if kind.isdigit():
        streams = int(kind)
        targets = w.targets_for(streams)
        cap = targets if targets > DEFAULT_CAP else None  # None: the default is enough
        return {"name": kind, "kind": "streams", "streams": streams, "targets": targets, "max_concurrent": cap}
    if kind == "cap":
        targets = int(n or CAP_TARGETS)
        streams = min(DEFAULT_CAP, round(targets * w.stream_seconds / w.interval))
        return {"name": name, "kind": "cap", "streams": streams, "targets": targets, "max_concurrent": None}
    if kind == "flood":
        healthy = int(n or FLOOD_HEALTHY)
        return {"name": name, "kind": "flood", "streams": round(healthy * w.stream_seconds / w.interval) + 1,
                "targets": healthy + 1, "healthy": healthy, "max_concurrent": None}
    raise SystemExit(f"--levels: unknown level {name!r} (a number of streams, cap[:TARGETS], flood[:HEALTHY] or "
                     "steady[:TARGETS])")


def target_names(spec: dict) -> list[str]:
    if spec["kind"] == "flood":
        return [f"h{i:04d}" for i in range(spec["healthy"])] + ["flood"]
    return [f"t{i:04d}" for i in range(spec["targets"])]


def write_config(path: Path, spec: dict, w: Workload, base: str) -> list[str]:
    """The daemon's YAML: default settings but the targets, their interval, loopback listening, jitter (see the
    output) and max_concurrent where the level needs more than the default."""
    lines = [f"# generated by bench/process.py, level {spec['name']}",
             f"defaults: {{interval: {w.interval:g}s}}"]
    scheduler = [f"jitter: {w.jitter:g}s"] if w.jitter != DEFAULT_JITTER else []
    if spec["max_concurrent"]:
        scheduler.append(f"max_concurrent: {spec['max_concurrent']}")
    if scheduler:
        lines.append(f"scheduler: {{{', '.join(scheduler)}}}")
    lines += ["server: {listen: '127.0.0.1:0'}", "targets:"]
    names = target_names(spec)
    for name in names:
        query = f"{FLOOD_QUERY}&ttft={w.ttft:g}" if name == "flood" else w.query
        lines.append(f"  - {{name: {name}, url: '{base}{PATH}?{query}&tag={name}'}}")
    path.write_text("\n".join(lines) + "\n")
    return names


# ---- processes -----------------------------------------------------------------------------------------------------


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


# ---- reading what was recorded -------------------------------------------------------------------------------------

FLOOD_WAIT_SECONDS = 40.0  # at most this long after the window for a run of the flooding target to end


def _wait_for_log(path: Path, *needles: bytes, timeout: float, proc: subprocess.Popen) -> bool:
    """Until a line of the log holds every needle (bounded by `timeout`, or the process's end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with open(path, "rb") as f:
            if any(all(n in line for n in needles) for line in f):
                return True
        time.sleep(0.5)
    return False


def read_truth(path: Path) -> dict[str, list[dict]]:
    """The simulator's records by tag, each list ordered by receipt."""
    by_tag: dict[str, list[dict]] = collections.defaultdict(list)
    if path.exists():
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:  # a line cut by a kill
                    continue
                by_tag[r.get("tag") or ""].append(r)
    for records in by_tag.values():
        records.sort(key=lambda r: r["received"])
    return by_tag


def read_daemon_log(path: Path) -> dict:
    finished, skipped, levels, events, bad = [], [], collections.Counter(), collections.Counter(), 0
    with open(path, "rb") as f:
        for line in f:
            try:
                obj = json.loads(line)
            except ValueError:
                bad += 1
                continue
            event = obj.get("event")
            events[event] += 1
            levels[obj.get("level")] += 1
            if event == "probe_finished":
                finished.append(obj)
            elif event == "probe_skipped":
                skipped.append(_log_time(obj))
    return {"finished": finished, "skipped": skipped, "levels": dict(levels), "events": dict(events),
            "not_json_lines": bad}


def _log_time(obj: dict) -> float | None:
    try:
        return datetime.datetime.fromisoformat(str(obj["timestamp"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return None


class Pairer:
    """Finds the simulator's record of a probe: same tag, received within `window` after the probe started."""

    def __init__(self, truth: dict[str, list[dict]], window: float) -> None:
        self.truth = truth
        self.window = window
        self.received = {tag: [r["received"] for r in records] for tag, records in truth.items()}
        self.used: set[int] = set()

    def find(self, tag: str, started_at: float) -> dict | None:
        times = self.received.get(tag)
        if not times:
            return None
        i = bisect.bisect_left(times, started_at - 0.005)  # wall clocks of two processes: allow a hair of skew
        if i < len(times) and times[i] - started_at < self.window:
            record = self.truth[tag][i]
            self.used.add(id(record))
            return record
        return None


# ---- one daemon pass -----------------------------------------------------------------------------------------------


def daemon_pass(spec: dict, w: Workload, opts: argparse.Namespace, env: dict) -> dict:
    monitor_core, sim_core = env["cores"]
    tag = spec["name"].replace(":", "-")
    truth_path, config = RUN_DIR / f"truth-{tag}.jsonl", RUN_DIR / f"config-{tag}.yaml"
    log_path, err_path = RUN_DIR / f"daemon-{tag}.log", RUN_DIR / f"daemon-{tag}.stderr"
    cap = spec["max_concurrent"]
    say(f"level {spec['name']}: {spec['targets']} targets every {w.interval:g} s (~{spec['streams']} streams), "
        f"max_concurrent {cap if cap else f'{DEFAULT_CAP} (default)'}; warm-up {opts.warmup:g} s, "
        f"window {opts.window:g} s ...")
    shutil.rmtree(RUN_DIR / "data", ignore_errors=True)  # the daemon's history (./data): each level starts empty
    sim = Simulator(env["sim_python"], sim_core, truth_path, RUN_DIR / f"simulator-{tag}.stderr")
    daemon = None
    try:
        names = write_config(config, spec, w, sim.base_url)
        daemon = DaemonProcess(env["daemon_cmd"], monitor_core, config, log_path, err_path)
        listen = daemon.wait_started(90)
        t_started = time.time()
        w0 = t_started + opts.warmup
        w1 = w0 + opts.window
        watched = [c for c in (monitor_core, sim_core) if c is not None]
        sleep_until(w0)
        cpu0, sim0, me0, busy0 = proc_cpu(daemon.pid), proc_cpu(sim.proc.pid), time.process_time(), core_busy(watched)
        rss_samples = []
        while time.time() < w1:  # RSS now and then (cheap reads of /proc)
            time.sleep(min(1.0, max(0.0, w1 - time.time())))
            rss_samples.append(proc_status_kb(daemon.pid, "VmRSS") or 0)
        cpu1, sim1, me1, busy1 = proc_cpu(daemon.pid), proc_cpu(sim.proc.pid), time.process_time(), core_busy(watched)
        real_w1 = time.time()
        time.sleep(w.stream_seconds + opts.tail)  # the window's probes finish and are logged
        if spec["kind"] == "flood":  # and one run of the flooding target, which lasts until its budget stops it
            _wait_for_log(log_path, b'"target": "flood"', b'"probe_finished"', timeout=FLOOD_WAIT_SECONDS,
                          proc=daemon.proc)
        hwm = proc_status_kb(daemon.pid, "VmHWM")
        alive = daemon.proc.poll() is None
    finally:
        status = daemon.stop() if daemon is not None else None
        sim.stop()
    window = real_w1 - w0
    out = {
        "level": spec["name"], "kind": spec["kind"], "targets": spec["targets"], "nominal_streams": spec["streams"],
        "max_concurrent": cap or DEFAULT_CAP, "max_concurrent_is_default": cap is None,
        "listen": listen, "window_seconds": round(window, 3), "warmup_seconds": opts.warmup,
        "daemon_alive_at_end": alive, "daemon_exit_status": status,
        "daemon_cpu_seconds": round(cpu1 - cpu0, 3), "daemon_core_share": round((cpu1 - cpu0) / window, 3),
        "simulator_core_share": round((sim1 - sim0) / window, 3),
        "peak_rss_mb": None if hwm is None else round(hwm / 1024, 1),
        "rss_mb_at_window_end": round(rss_samples[-1] / 1024, 1) if rss_samples else None,
    }
    if monitor_core is not None:
        foreign = (busy1[monitor_core] - busy0[monitor_core]) - (cpu1 - cpu0)
        out["monitor_core_foreign_share"] = round(max(0.0, foreign) / window, 3)
    if sim_core is not None:
        foreign = (busy1[sim_core] - busy0[sim_core]) - (sim1 - sim0) - (me1 - me0)
        out["simulator_core_busy_share"] = round((busy1[sim_core] - busy0[sim_core]) / window, 3)
        out["simulator_core_foreign_share"] = round(max(0.0, foreign) / window, 3)
    out.update(daemon_figures(spec, w, names, log_path, read_truth(truth_path), w0, real_w1, cpu1 - cpu0))
    out["config"] = str(config.relative_to(ROOT))
    out["daemon_log"] = str(log_path.relative_to(ROOT))
    if spec["kind"] == "flood":
        out["flood_note"] = ("the flooding target's events are counted only when its probe ends (a budget, or the "
                             "timeout); CPU per event at this level is not the product's figure")
    return out


def daemon_figures(spec: dict, w: Workload, names: list[str], log_path: Path, truth: dict[str, list[dict]],
                   w0: float, w1: float, cpu_seconds: float) -> dict:
    """What the daemon's log says about the window [w0, w1], each result paired with the simulator's record of the
    same request. Only the daemon's own tags (its target names) are looked at: in the side-by-side pass the same
    truth log also holds blackbox_exporter's requests."""
    window = w1 - w0
    log = read_daemon_log(log_path)
    mine = set(names)
    truth = {tag: records for tag, records in truth.items() if tag in mine}
    out: dict[str, Any] = {
        "log_lines": log["events"], "log_levels": log["levels"], "log_not_json_lines": log["not_json_lines"],
        "skipped_runs_in_window": sum(1 for t in log["skipped"] if t is not None and w0 <= t <= w1),
    }
    pairer = Pairer(truth, window=min(w.interval / 2, 2.0))
    finished = log["finished"]
    in_window = [r for r in finished
                 if isinstance(r.get("started_at"), (int, float)) and w0 <= r["started_at"] <= w1]
    if finished and not any(isinstance(r.get("started_at"), (int, float)) for r in finished):
        out["error"] = "the daemon's probe_finished lines carry no started_at: results cannot be paired"
    groups = {"healthy": lambda n: n != "flood", "flood": lambda n: n == "flood"} if spec["kind"] == "flood" \
        else {"all": lambda n: True}
    # the flooding target's probes last until a budget stops them (longer than the window): all of them count
    out["groups"] = {g: analyse([r for r in (finished if g == "flood" else in_window) if keep(r.get("target", ""))
                                 and isinstance(r.get("started_at"), (int, float))], pairer, w)
                     for g, keep in groups.items()}
    if "flood" in out["groups"]:
        out["groups"]["flood"]["probes_of_the_whole_pass"] = True
        out["groups"]["flood"]["runs"] = [
            {"outcome": r.get("outcome"), "reason": r.get("reason"), "seconds": r.get("duration_seconds"),
             "events": r.get("events"), "warnings": r.get("warnings"), "detail": r.get("detail"),
             "events_per_second": round(r["events"] / r["duration_seconds"]) if r.get("duration_seconds") else None}
            for r in finished if r.get("target") == "flood"]
    # what the daemon did in the window: events (each probe's spread evenly over its life) and streams open
    events = stream_seconds = 0.0
    for r in finished:
        s, d = r.get("started_at"), r.get("duration_seconds") or 0.0
        if not isinstance(s, (int, float)):
            continue
        overlap = max(0.0, min(s + d, w1) - max(s, w0))
        stream_seconds += overlap
        if d > 0:
            events += (r.get("events") or 0) * overlap / d
    out["events_in_window"] = round(events)
    out["events_per_second"] = round(events / window, 1)
    out["mean_open_streams"] = round(stream_seconds / window, 1)
    out["cpu_us_per_event"] = round(cpu_seconds / events * 1e6, 1) if events else None
    unmatched = [r for records in truth.values() for r in records
                 if w0 <= r["received"] <= w1 and id(r) not in pairer.used]
    out["simulator_requests_in_window"] = sum(1 for rs in truth.values() for r in rs if w0 <= r["received"] <= w1)
    out["simulator_requests_without_result"] = len(unmatched)  # e.g. probes still running when the daemon stopped
    return out


def analyse(results: list[dict], pairer: Pairer, w: Workload) -> dict:
    outcomes, clocks, receipts, warned = (collections.Counter(), collections.Counter(), collections.Counter(),
                                          collections.Counter())
    errors, arrivals, requests, late, parsing = [], [], [], [], []
    worst = []
    unpaired = no_ttft = no_truth_token = lagged = 0
    for r in results:
        outcomes[f"{r.get('outcome')}/{r.get('reason')}"] += 1
        clocks[str(r.get("clock"))] += 1
        warnings = r.get("warnings") or []
        lagged += LAG in warnings
        warned.update(warnings)
        truth = pairer.find(r.get("target", ""), r["started_at"])
        if truth is None:
            unpaired += 1
            continue
        ttft = r.get("ttft_seconds")
        if ttft is None:
            no_ttft += 1
            continue
        if truth.get("first_token") is None:
            no_truth_token += 1
            continue
        origin = truth["first_token"] - truth["received"]
        error = ttft - origin
        arrival = r["started_at"] + ttft - truth["first_token"]
        errors.append(error)
        arrivals.append(arrival)
        receipts[str(truth.get("received_by"))] += 1
        requests.append(truth["received"] - r["started_at"])
        if truth.get("app") is not None:
            parsing.append(truth["app"] - truth["received"])
        late.append(origin - w.ttft)
        worst.append((error, r, arrival))
    worst.sort(key=lambda x: -abs(x[0]))
    return {
        "probes": len(results), "paired": len(errors), "unpaired": unpaired, "no_ttft": no_ttft,
        "truth_without_first_token": no_truth_token,
        "outcomes": dict(outcomes.most_common()), "clock": dict(clocks), "event_loop_lag": lagged,
        "warnings": dict(warned.most_common()),
        "ttft_error": summary_ms(errors),
        "arrival_error": summary_ms(arrivals),
        "receipt_stamps": dict(receipts),  # how the simulator knew when each request arrived: kernel or loop
        "request_to_origin": summary_ms(requests),  # started_at -> the origin has the request: connect + send
        "origin_late": summary_ms(late),  # first token written - received - ttft: the origin's own lateness
        "origin_parsing": summary_ms(parsing),  # the request's first bytes -> the simulator's endpoint entered
        "worst": [{"target": r.get("target"), "started_at": r["started_at"], "ttft_error_ms": round(e * 1000, 3),
                   "arrival_error_ms": round(a * 1000, 3), "clock": r.get("clock"), "outcome": r.get("outcome"),
                   "warnings": r.get("warnings")} for e, r, a in worst[:5]],
    }


# ---- blackbox_exporter ---------------------------------------------------------------------------------------------

BLACKBOX_MODULE = "sse_ttfb"
BLACKBOX_CONFIG = f"""# generated by bench/process.py
modules:
  {BLACKBOX_MODULE}:
    prober: http
    timeout: 20s
    http:
      method: GET
      valid_status_codes: [200]
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      no_follow_redirects: true
"""
TTFB_PHASES = ("resolve", "connect", "tls", "processing")


def find_blackbox() -> str | None:
    return shutil.which("prometheus-blackbox-exporter") or shutil.which("blackbox_exporter")


def blackbox_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def parse_probe(text: str) -> dict:
    phases, values = {}, {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        try:
            number = float(value)
        except ValueError:
            continue
        if name.startswith('probe_http_duration_seconds{phase="'):
            phases[name.split('"')[1]] = number
        elif "{" not in name:
            values[name] = number
    return {"phases": phases, "success": values.get("probe_success"), "status": values.get("probe_http_status_code"),
            "duration": values.get("probe_duration_seconds")}


class _KeptAlive:
    """One HTTP/1.1 connection to blackbox_exporter, reused for one loop's requests one after another (a pool
    shared by a thousand requests in flight costs more than the exporter; this costs next to nothing)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str, headers: dict[str, str]) -> tuple[int, str]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"GET {target} HTTP/1.1", f"Host: {self.host}:{self.port}", *(f"{k}: {v}" for k, v in headers.items())]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        if "content-length" in fields:
            body = await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            await self.reader.readuntil(b"\r\n")  # the empty trailer
            body = b"".join(parts)
        else:
            body = await self.reader.read()
            await self.close()
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, body.decode("utf-8", "replace")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def drive_blackbox(bb_host: str, bb_port: int, targets: list[tuple[str, str, float]], t_start: float,
                         last_start: float, interval: float, timeout: float) -> list[dict]:
    """For each (name, target URL, offset): GET /probe every `interval` from t_start + offset while the start is
    before `last_start`, never two at once per name (a late one skips its slot, as the daemon's scheduler does).
    Bounded: at most (last_start - t_start) / interval requests per name, each within `timeout` + 10 s."""
    out: list[dict] = []

    async def loop(name: str, target: str, offset: float) -> None:
        due, k = t_start + offset, 0
        conn = _KeptAlive(bb_host, bb_port)
        try:
            while due < last_start:
                await asyncio.sleep(max(0.0, due - time.time()))
                tag = f"{name}-{k}"
                query = urllib.parse.urlencode({"module": BLACKBOX_MODULE, "target": f"{target}&tag={tag}"})
                sent = time.time()
                record: dict[str, Any] = {"tag": tag, "name": name, "sent": sent}
                try:
                    async with asyncio.timeout(timeout + 10):
                        status, text = await conn.get(f"/probe?{query}",
                                                      {"X-Prometheus-Scrape-Timeout-Seconds": f"{timeout:g}"})
                    record.update(parse_probe(text), http=status)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                        ValueError, IndexError) as exc:
                    record["exception"] = type(exc).__name__
                    await conn.close()
                record["done"] = time.time()
                out.append(record)
                k += 1
                due += interval
                while due < time.time():  # still running when the next was due: skipped, never queued
                    due += interval
                    k += 1
        finally:
            await conn.close()

    await asyncio.gather(*(loop(*t) for t in targets))
    return out


class BlackboxProcess:
    """Debian's blackbox_exporter with one `http` module, pinned to `core`, listening on a free loopback port."""

    def __init__(self, binary: str, core: int | None, stderr: Path) -> None:
        config = RUN_DIR / "blackbox.yml"
        config.write_text(BLACKBOX_CONFIG)
        self.port = free_port()
        self._err = open(stderr, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
                                      "--log.level=warn"], cwd=RUN_DIR, stdin=subprocess.DEVNULL, stdout=self._err,
                                     stderr=self._err, env=clean_env(), preexec_fn=pinned(core))
        self.pid = self.proc.pid
        try:
            _wait_http(f"http://127.0.0.1:{self.port}/-/healthy", self.proc, 20)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop(self.proc, 10)
        self._err.close()


def blackbox_targets(names: list[str], w: Workload, base_url: str) -> list[tuple[str, str, float]]:
    """(name, target URL, first-run offset) for drive_blackbox: the daemon's stream, with the response headers held
    until the first token is due (so the exporter's `processing` phase ends at the first token)."""
    query = f"{w.query}&headers_delay={w.ttft:g}"
    return [(n, f"{base_url}{PATH}?{query}", first_run_offset(n, w.interval)) for n in names]


def blackbox_pass(spec: dict, w: Workload, opts: argparse.Namespace, env: dict, binary: str) -> dict:
    """blackbox_exporter alone: the level's targets, no daemon running."""
    monitor_core, sim_core = env["cores"]
    tag = f"blackbox-{spec['name']}"
    truth_path = RUN_DIR / f"truth-{tag}.jsonl"
    names = target_names(spec)
    say(f"blackbox_exporter alone at level {spec['name']}: {len(names)} targets every {w.interval:g} s ...")
    sim = Simulator(env["sim_python"], sim_core, truth_path, RUN_DIR / f"simulator-{tag}.stderr")
    bb = None
    try:
        bb = BlackboxProcess(binary, monitor_core, RUN_DIR / f"{tag}.stderr")
        targets = blackbox_targets(names, w, sim.base_url)
        t_start = time.time() + 0.5
        w0 = t_start + opts.warmup
        w1 = w0 + opts.window
        watched = [c for c in (monitor_core, sim_core) if c is not None]
        state: dict[str, Any] = {}

        async def run() -> list[dict]:
            async def sample(at: float, key: str) -> None:
                await asyncio.sleep(max(0.0, at - time.time()))
                state[key] = (time.time(), proc_cpu(bb.pid), proc_cpu(sim.proc.pid), time.process_time(),
                              core_busy(watched))

            sampler = asyncio.gather(sample(w0, "start"), sample(w1, "end"))
            records = await drive_blackbox("127.0.0.1", bb.port, targets, t_start, w1, w.interval, timeout=20)
            await sampler
            return records

        records = asyncio.run(run())
        hwm = proc_status_kb(bb.pid, "VmHWM")
    finally:
        if bb is not None:
            bb.stop()
        sim.stop()
    (t0, bb0, sim0, me0, busy0), (t1, bb1, sim1, me1, busy1) = state["start"], state["end"]
    window = t1 - t0
    out = {
        "level": spec["name"], "targets": len(names), "nominal_streams": spec["streams"],
        "window_seconds": round(window, 3),
        **blackbox_figures(records, read_truth(truth_path), w, w0, w1, t0, t1),
        "blackbox_core_share": round((bb1 - bb0) / window, 3),
        "blackbox_peak_rss_mb": None if hwm is None else round(hwm / 1024, 1),
        "simulator_core_share": round((sim1 - sim0) / window, 3),
    }
    if monitor_core is not None:
        foreign = (busy1[monitor_core] - busy0[monitor_core]) - (bb1 - bb0)
        out["monitor_core_foreign_share"] = round(max(0.0, foreign) / window, 3)
    if sim_core is not None:
        foreign = (busy1[sim_core] - busy0[sim_core]) - (sim1 - sim0) - (me1 - me0)
        out["simulator_core_busy_share"] = round((busy1[sim_core] - busy0[sim_core]) / window, 3)
        out["simulator_core_foreign_share"] = round(max(0.0, foreign) / window, 3)
    return out


def blackbox_figures(records: list[dict], truth: dict[str, list[dict]], w: Workload, w0: float, w1: float,
                     t0: float, t1: float) -> dict:
    """The driver's records of probes sent in [w0, w1], each paired with the simulator's record of the same request
    (every blackbox request carries a tag of its own); `t0`..`t1`: the window the open streams are averaged over."""
    by_tag = {r["tag"]: r for rs in truth.values() for r in rs if r.get("tag")}
    errors, known, late, open_seconds = [], [], [], 0.0
    outcomes = collections.Counter()
    unpaired = failed = 0
    worst = []
    for rec in records:
        open_seconds += max(0.0, min(rec["done"], t1) - max(rec["sent"], t0))
        if not w0 <= rec["sent"] <= w1:
            continue
        ok = rec.get("success") == 1.0
        outcomes["success" if ok else f"failed (http {rec.get('http')}, status {rec.get('status')}, "
                                      f"{rec.get('exception', '')})"] += 1
        phases = rec.get("phases") or {}
        if not ok or not all(p in phases for p in TTFB_PHASES):
            failed += 1
            continue
        ttfb = sum(phases[p] for p in TTFB_PHASES)
        t = by_tag.get(rec["tag"])
        known.append(ttfb - w.ttft)
        if t is None or t.get("first_byte") is None:
            unpaired += 1
            continue
        error = ttfb - (t["first_byte"] - t["received"])
        errors.append(error)
        late.append(t["first_byte"] - t["received"] - w.ttft)
        worst.append((error, rec["tag"], phases))
    worst.sort(key=lambda x: -abs(x[0]))
    window = t1 - t0
    return {
        "probes": sum(outcomes.values()), "paired": len(errors),
        "unpaired": unpaired, "failed_or_incomplete": failed, "outcomes": dict(outcomes),
        "ttfb_error": summary_ms(errors),
        "ttfb_minus_known_delay": summary_ms(known),
        "origin_late": summary_ms(late),  # headers written - received - the known delay: the origin's own lateness
        "mean_open_streams": round(open_seconds / window, 1) if window > 0 else None,
        "worst": [{"tag": tag_, "ttfb_error_ms": round(e * 1000, 3),
                   "phases_ms": {k: round(v * 1000, 3) for k, v in phases.items()}} for e, tag_, phases in worst[:5]],
    }


# ---- side by side: the daemon and blackbox_exporter on the same core at the same time ----------------------------

SIM_SATURATED = 0.90  # the simulator's core at least this busy: the simulator, not a monitor, is the limit
SIM_BEHIND_MS = 50.0  # the origin's own lateness p99 above this: the simulator fell behind its schedule


def side_by_side_pass(spec: dict, w: Workload, opts: argparse.Namespace, env: dict, binary: str) -> dict:
    """One simulator (truth log on) on its core; the daemon AND blackbox_exporter both on the monitor core, started
    together, each probing its own set of the level's targets (the daemon's `t0000`.., the exporter's `b0000`..:
    every request's `tag` says whose it is) over the same window. The simulator serves twice the level's streams."""
    monitor_core, sim_core = env["cores"]
    tag = f"side-{spec['name']}"
    truth_path, config = RUN_DIR / f"truth-{tag}.jsonl", RUN_DIR / f"config-{tag}.yaml"
    log_path, err_path = RUN_DIR / f"daemon-{tag}.log", RUN_DIR / f"daemon-{tag}.stderr"
    cap = spec["max_concurrent"]
    bb_names = [f"b{i:04d}" for i in range(spec["targets"])]
    say(f"side by side at level {spec['name']}: the daemon and blackbox_exporter on core {monitor_core}, "
        f"{spec['targets']} targets each every {w.interval:g} s (~{spec['streams']} streams each, "
        f"~{2 * spec['streams']} from the simulator); warm-up {opts.warmup:g} s, window {opts.window:g} s ...")
    sim = Simulator(env["sim_python"], sim_core, truth_path, RUN_DIR / f"simulator-{tag}.stderr")
    daemon = bb = None
    try:
        bb = BlackboxProcess(binary, monitor_core, RUN_DIR / f"blackbox-{tag}.stderr")
        names = write_config(config, spec, w, sim.base_url)
        targets = blackbox_targets(bb_names, w, sim.base_url)
        daemon = DaemonProcess(env["daemon_cmd"], monitor_core, config, log_path, err_path)
        listen = daemon.wait_started(90)
        t_start = time.time()  # the exporter's first runs spread over the first interval, as the daemon's are
        w0 = t_start + opts.warmup
        w1 = w0 + opts.window
        watched = [c for c in (monitor_core, sim_core) if c is not None]
        state: dict[str, Any] = {}
        rss_samples: list[int] = []

        def snapshot() -> tuple:
            return (time.time(), proc_cpu(daemon.pid), proc_cpu(bb.pid), proc_cpu(sim.proc.pid), time.process_time(),
                    core_busy(watched))

        async def run() -> list[dict]:
            async def sample() -> None:
                await asyncio.sleep(max(0.0, w0 - time.time()))
                state["start"] = snapshot()
                while (left := w1 - time.time()) > 0:  # the daemon's RSS now and then (cheap reads of /proc)
                    await asyncio.sleep(min(1.0, left))
                    rss_samples.append(proc_status_kb(daemon.pid, "VmRSS") or 0)
                state["end"] = snapshot()

            sampler = asyncio.ensure_future(sample())
            records = await drive_blackbox("127.0.0.1", bb.port, targets, t_start, w1, w.interval, timeout=20)
            await sampler
            return records

        records = asyncio.run(run())
        # the daemon's probes of the window finish and are logged (the exporter's have: the driver waited for them,
        # so a simulator running late lengthens this wait too)
        sleep_until(max(state["end"][0] + w.stream_seconds + opts.tail, time.time() + 1.0))
        hwm, bb_hwm = proc_status_kb(daemon.pid, "VmHWM"), proc_status_kb(bb.pid, "VmHWM")
        alive = daemon.proc.poll() is None
    finally:
        status = daemon.stop() if daemon is not None else None
        if bb is not None:
            bb.stop()
        sim.stop()
    (t0, d0, bb0, sim0, me0, busy0), (t1, d1, bb1, sim1, me1, busy1) = state["start"], state["end"]
    window = t1 - t0
    truth = read_truth(truth_path)
    ours = {
        "targets": spec["targets"], "max_concurrent": cap or DEFAULT_CAP, "max_concurrent_is_default": cap is None,
        "listen": listen, "daemon_alive_at_end": alive, "daemon_exit_status": status,
        "daemon_cpu_seconds": round(d1 - d0, 3), "daemon_core_share": round((d1 - d0) / window, 3),
        "peak_rss_mb": None if hwm is None else round(hwm / 1024, 1),
        "rss_mb_at_window_end": round(rss_samples[-1] / 1024, 1) if rss_samples else None,
        **daemon_figures(spec, w, names, log_path, truth, w0, w1, d1 - d0),
        "config": str(config.relative_to(ROOT)), "daemon_log": str(log_path.relative_to(ROOT)),
    }
    theirs = {
        "targets": len(bb_names),
        **blackbox_figures(records, {t: rs for t, rs in truth.items() if t not in set(names)}, w, w0, w1, t0, t1),
        "blackbox_core_share": round((bb1 - bb0) / window, 3),
        "blackbox_peak_rss_mb": None if bb_hwm is None else round(bb_hwm / 1024, 1),
    }
    mine_p99 = ours["groups"]["all"]["ttft_error"].get("p99_ms")
    their_p99 = theirs["ttfb_error"].get("p99_ms")
    out: dict[str, Any] = {
        "level": spec["name"], "mode": "side by side, same core, same time", "nominal_streams_each": spec["streams"],
        "targets_each": spec["targets"], "window_seconds": round(window, 3), "warmup_seconds": opts.warmup,
        "ours": ours, "blackbox": theirs,
        "blackbox_p99_over_ours": round(their_p99 / mine_p99, 1) if mine_p99 and their_p99 else None,
        "simulator_core_share": round((sim1 - sim0) / window, 3),
        "driver_core_share": round((me1 - me0) / window, 3),  # this process drives the exporter, on the sim's core
        "ttft": w.ttft,
    }
    if monitor_core is not None:
        busy = busy1[monitor_core] - busy0[monitor_core]
        out["monitor_core_busy_share"] = round(busy / window, 3)
        out["monitor_core_foreign_share"] = round(max(0.0, busy - (d1 - d0) - (bb1 - bb0)) / window, 3)
    if sim_core is not None:
        busy = busy1[sim_core] - busy0[sim_core]
        out["simulator_core_busy_share"] = round(busy / window, 3)
        out["simulator_core_foreign_share"] = round(max(0.0, busy - (sim1 - sim0) - (me1 - me0)) / window, 3)
    out["simulator"] = simulator_verdict(out, ours["groups"]["all"]["origin_late"], theirs["origin_late"])
    return out


def simulator_verdict(p: dict, ours_late: dict, their_late: dict) -> dict:
    """Was the one simulator (serving both monitors' streams) the limit of a side-by-side pass?"""
    busy = p.get("simulator_core_busy_share", p["simulator_core_share"])
    late = [x for x in (ours_late.get("p99_ms"), their_late.get("p99_ms")) if x is not None]
    saturated = busy >= SIM_SATURATED
    behind = bool(late) and max(late) > SIM_BEHIND_MS
    if saturated:
        note = (f"the simulator saturated its core ({100 * busy:.0f} % busy: simulator "
                f"{100 * p['simulator_core_share']:.0f} %, the blackbox driver {100 * p['driver_core_share']:.0f} %) "
                f"serving 2 x {p['nominal_streams_each']:,} streams: it, not a monitor, was the limit of this level")
    elif behind:
        note = (f"the simulator ({100 * busy:.0f} % of its core busy) fell behind its schedule serving "
                f"2 x {p['nominal_streams_each']:,} streams")
    else:
        note = f"the simulator kept up ({100 * busy:.0f} % of its core busy)"
    if late:
        note += (f"; the origin's own lateness (first token / headers written - received - {p['ttft']:g} s) p50 "
                 f"{_f(ours_late.get('p50_ms'))} / {_f(their_late.get('p50_ms'))} ms, p99 "
                 f"{_f(ours_late.get('p99_ms'))} / {_f(their_late.get('p99_ms'))} ms")
    if saturated or behind:
        note += ("; the truth records take that lateness out of both errors, but the load each monitor saw was set "
                 "by the simulator (fewer events per second than nominal), so this level is not the nominal one")
    return {"saturated": saturated, "behind_schedule": behind, "core_busy_share": busy, "note": note}


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


# ---- installing and describing what is measured --------------------------------------------------------------------


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


# ---- results -------------------------------------------------------------------------------------------------------


def evaluate(levels: list[dict], blackbox: list[dict], side: list[dict], steady: list[dict]) -> dict:
    by = {lv["level"]: lv for lv in levels}
    full = next((s for s in steady if s["targets"] == 1000 and s["prefilled"]), {})
    bb = {b["level"]: b for b in blackbox}
    sbs = (next((p for p in side if p["level"] == "200"), None) or {})

    def p99(level: str, group: str = "all") -> float | None:
        return (((by.get(level) or {}).get("groups") or {}).get(group) or {}).get("ttft_error", {}).get("p99_ms")

    flood = next((lv for lv in levels if lv["kind"] == "flood"), None)
    ours_200, theirs_200 = p99("200"), (bb.get("200") or {}).get("ttfb_error", {}).get("p99_ms")
    figures = {
        "ttft_error_p99_ms_at_200": ours_200,
        "ttft_error_p99_ms_at_1000": p99("1000"),
        "flood_healthy_ttft_error_p99_ms": p99(flood["level"], "healthy") if flood else None,
        # the "in the same run": both monitors on the same core at the same time (the side-by-side pass)
        "blackbox_p99_over_ours_at_200": sbs.get("blackbox_p99_over_ours"),
        "cpu_us_per_event_at_200": (by.get("200") or {}).get("cpu_us_per_event"),
        "peak_rss_mb_at_1000": (by.get("1000") or {}).get("peak_rss_mb"),
        "steady_rss_mb_at_1000_targets": full.get("steady_rss_mb"),
        "steady_rss_growth_mb_per_hour": full.get("rss_growth_mb_per_hour"),
    }
    out = {}
    for key, (op, limit) in TARGETS.items():
        value = figures[key]
        met = None if value is None else (value <= limit if op == "<=" else value >= limit)
        out[key] = {"value": value, "target": f"{op} {limit:g}", "met": met}
    out["blackbox_p99_over_ours_at_200"].update(
        {"pass": "side by side, same core, same time",
         "ours_ttft_error_p99_ms": ((sbs.get("ours") or {}).get("groups", {}).get("all") or {}).get("ttft_error",
                                                                                                  {}).get("p99_ms"),
         "blackbox_ttfb_error_p99_ms": (sbs.get("blackbox") or {}).get("ttfb_error", {}).get("p99_ms")})
    out["blackbox_p99_over_ours_at_200_alone"] = {  # information only: not the target's figure
        "value": round(theirs_200 / ours_200, 1) if ours_200 and theirs_200 else None, "target": None, "met": None,
        "pass": "alone: blackbox_exporter in a pass of its own, over the daemon's own pass at 200 streams",
        "ours_ttft_error_p99_ms": ours_200, "blackbox_ttfb_error_p99_ms": theirs_200}
    return out


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _triple(s: dict) -> str:
    return "/".join(_f(s.get(k)) for k in ("p50_ms", "p99_ms", "max_ms"))


def _grid(rows: list[tuple]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).rjust(wd) for c, wd in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    return lines


def table(results: dict) -> str:
    rows = [("level", "targets", "cap", "open", "probes", "paired", "TTFT err p50/p99/max ms",
             "arrival err p50/p99/max ms", "req->origin p50/p99 ms", "lag", "user clk", "CPU us/ev", "core %",
             "RSS MB", "sim %", "foreign %")]
    for lv in results["levels"]:
        for group, g in lv["groups"].items():
            label = lv["level"] + ("" if group == "all" else f" ({group})")
            rows.append((
                label, lv["targets"], f"{lv['max_concurrent']}{'' if lv['max_concurrent_is_default'] else '*'}",
                _f(lv["mean_open_streams"], 0), g["probes"], g["paired"], _triple(g["ttft_error"]),
                _triple(g["arrival_error"]), "/".join(_f(g["request_to_origin"].get(k)) for k in ("p50_ms", "p99_ms")),
                g["event_loop_lag"], g["clock"].get("user", 0),
                _f(lv["cpu_us_per_event"], 1), _f(100 * lv["daemon_core_share"], 0), _f(lv["peak_rss_mb"], 0),
                _f(100 * lv.get("simulator_core_busy_share", lv["simulator_core_share"]), 0),
                "/".join(_f(100 * lv.get(k, 0.0), 0) for k in ("monitor_core_foreign_share",
                                                                "simulator_core_foreign_share")),
            ))
    lines = _grid(rows)
    lines.append(f"cap: scheduler.max_concurrent (* raised from the default {DEFAULT_CAP} so that the level's streams can be open "
                 "at once); open: mean streams open in the window; lag: probes flagged event_loop_lag; user clk: "
                 "results with clock=user; req->origin: started_at (the request's send) to the simulator's kernel receipt "
                 "of it; foreign %: other processes' CPU on the monitor/simulator core")
    for lv in results["levels"]:
        notes = []
        if not lv["max_concurrent_is_default"]:
            notes.append(f"scheduler.max_concurrent raised to {lv['max_concurrent']} (default {DEFAULT_CAP})")
        for run in (lv["groups"].get("flood") or {}).get("runs", []):
            notes.append(f"flood run: {run['outcome']}/{run['reason']} after {_f(run['seconds'], 1)} s, "
                         f"{run['events']} events ({run['events_per_second']}/s), warnings {run['warnings']}")
        if "flood" in lv["groups"] and not lv["groups"]["flood"].get("runs"):
            notes.append("no run of the flooding target ended before the daemon was stopped")
        for group, g in lv["groups"].items():
            if g["unpaired"] or g["no_ttft"]:
                notes.append(f"{group}: {g['unpaired']} unpaired, {g['no_ttft']} without a TTFT")
            bad = {k: v for k, v in g["outcomes"].items() if k != "completed/ok"}
            if bad:
                notes.append(f"{group} outcomes: {g['outcomes']}")
        if lv["skipped_runs_in_window"]:
            notes.append(f"{lv['skipped_runs_in_window']} runs skipped in the window")
        if lv["simulator_requests_without_result"]:
            notes.append(f"{lv['simulator_requests_without_result']} requests the simulator got in the window have no "
                         "result")
        if not lv["daemon_alive_at_end"]:
            notes.append("THE DAEMON DIED")
        if lv.get("error"):
            notes.append(lv["error"])
        if notes:
            lines.append(f"  {lv['level']}: " + "; ".join(notes))
    if results["blackbox"]:
        lines.append("")
        lines.append("blackbox_exporter ALONE (a pass of its own, the daemon not running; ours p99: the daemon's "
                     "own pass at that level)")
        rows = [("blackbox level", "targets", "open", "probes", "paired", "TTFB err p50/p99/max ms",
                 "ours p99 ms", "blackbox/ours", "bb core %", "bb RSS MB", "sim %", "foreign %")]
        ours = {lv["level"]: lv["groups"].get("all", {}).get("ttft_error", {}).get("p99_ms")
                for lv in results["levels"]}
        for b in results["blackbox"]:
            mine = ours.get(b["level"])
            theirs = b["ttfb_error"].get("p99_ms")
            rows.append((b["level"], b["targets"], _f(b["mean_open_streams"], 0), b["probes"], b["paired"],
                         _triple(b["ttfb_error"]), _f(mine),
                         _f(round(theirs / mine, 1) if mine and theirs else None, 1),
                         _f(100 * b["blackbox_core_share"], 0), _f(b["blackbox_peak_rss_mb"], 0),
                         _f(100 * b.get("simulator_core_busy_share", b["simulator_core_share"]), 0),
                         "/".join(_f(100 * b.get(k, 0.0), 0) for k in ("monitor_core_foreign_share",
                                                                        "simulator_core_foreign_share"))))
        lines += _grid(rows)
        for b in results["blackbox"]:
            if b["failed_or_incomplete"] or b["unpaired"]:
                lines.append(f"  blackbox {b['level']}: {b['failed_or_incomplete']} failed, {b['unpaired']} unpaired: "
                             f"{b['outcomes']}")
    elif results.get("blackbox_skipped"):
        lines.append("")
        lines.append(f"blackbox_exporter: skipped ({results['blackbox_skipped']})")
    if results["side_by_side"]:
        lines.append("")
        lines.append("SIDE BY SIDE, SAME CORE, SAME TIME: the daemon and blackbox_exporter both on the monitor core, "
                     "each with the level's targets, one simulator serving both")
        rows = [("level", "targets each", "ours open", "ours probes/paired", "ours TTFT err p50/p99/max ms", "lag",
                 "bb open", "bb probes/paired", "bb TTFB err p50/p99/max ms", "blackbox/ours",
                 "core % ours/bb", "sim %", "foreign %")]
        for p in results["side_by_side"]:
            ours, theirs = p["ours"], p["blackbox"]
            g = ours["groups"]["all"]
            rows.append((p["level"], p["targets_each"], _f(ours["mean_open_streams"], 0),
                         f"{g['probes']}/{g['paired']}", _triple(g["ttft_error"]), g["event_loop_lag"],
                         _f(theirs["mean_open_streams"], 0), f"{theirs['probes']}/{theirs['paired']}",
                         _triple(theirs["ttfb_error"]), _f(p["blackbox_p99_over_ours"], 1),
                         f"{_f(100 * ours['daemon_core_share'], 0)}/{_f(100 * theirs['blackbox_core_share'], 0)}",
                         _f(100 * p.get("simulator_core_busy_share", p["simulator_core_share"]), 0),
                         "/".join(_f(100 * p.get(k, 0.0), 0) for k in ("monitor_core_foreign_share",
                                                                        "simulator_core_foreign_share"))))
        lines += _grid(rows)
        lines.append("blackbox/ours: blackbox's TTFB error p99 over our TTFT error p99, both from this pass; core %: "
                     "each process's share of the monitor core; sim %: the simulator's core busy (the simulator "
                     "and the blackbox driver)")
        for p in results["side_by_side"]:
            ours, theirs = p["ours"], p["blackbox"]
            g = ours["groups"]["all"]
            notes = [p["simulator"]["note"] if not p["simulator"]["saturated"] else
                     "SIMULATOR SATURATED: " + p["simulator"]["note"]]
            notes.append(f"blackbox TTFB - {p['ttft']:g} s (the issue's literal definition) p50/p99/max "
                         f"{_triple(theirs['ttfb_minus_known_delay'])} ms")
            if not ours["max_concurrent_is_default"]:
                notes.append(f"the daemon's scheduler.max_concurrent raised to {ours['max_concurrent']}")
            if g["unpaired"] or g["no_ttft"]:
                notes.append(f"ours: {g['unpaired']} unpaired, {g['no_ttft']} without a TTFT")
            if {k: v for k, v in g["outcomes"].items() if k != "completed/ok"}:
                notes.append(f"our outcomes: {g['outcomes']}")
            if ours["skipped_runs_in_window"]:
                notes.append(f"{ours['skipped_runs_in_window']} of our runs skipped in the window")
            if ours["simulator_requests_without_result"]:
                notes.append(f"{ours['simulator_requests_without_result']} of our requests the simulator got in the "
                             "window have no result")
            if theirs["failed_or_incomplete"] or theirs["unpaired"]:
                notes.append(f"blackbox: {theirs['failed_or_incomplete']} failed, {theirs['unpaired']} unpaired: "
                             f"{theirs['outcomes']}")
            if not ours["daemon_alive_at_end"]:
                notes.append("THE DAEMON DIED")
            lines.append(f"  {p['level']}: " + "; ".join(notes))
    elif results.get("side_by_side_skipped"):
        lines.append("")
        lines.append(f"side by side: skipped ({results['side_by_side_skipped']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer levels, shorter windows (<= 3 minutes)")
    parser.add_argument("--levels", help="comma-separated: stream counts, cap[:TARGETS], flood[:HEALTHY], "
                                         "steady[:TARGETS] (default 50,200,500,1000,cap,flood,steady; quick "
                                         "200,1000,flood)")
    parser.add_argument("--steady-window", type=float, default=300.0,
                        help="the steady level's window after its warm-up (five intervals), seconds (default 300)")
    parser.add_argument("--steady-no-prefill", dest="steady_prefill", action="store_false",
                        help="start the steady level with an empty history (the RSS curve shows it filling)")
    parser.add_argument("--blackbox-levels", help="stream counts for blackbox_exporter (default 50,200,500,1000; "
                                                  "quick 200; '' for none)")
    parser.add_argument("--side-by-side-levels", help="stream counts at which the daemon and blackbox_exporter run "
                                                      "at the same time on the same core (default 200,1000; quick "
                                                      "200; '' for none)")
    parser.add_argument("--window", type=float, help="steady window per pass, seconds (default 30; quick 10)")
    parser.add_argument("--warmup", type=float, help="seconds from the daemon's start to the window (default 10; "
                                                     "quick 6): every target has started a run by then")
    parser.add_argument("--tail", type=float, default=2.0,
                        help="seconds after the window (beyond one stream) for its probes to finish")
    parser.add_argument("--ttft", type=float, default=0.5, help="the origin's time to first token (default 0.5)")
    parser.add_argument("--tokens", type=int, default=60, help="token events per stream (default 60: ~3.5 s)")
    parser.add_argument("--rate", type=float, default=20.0, help="token events per second (default 20)")
    parser.add_argument("--interval", type=float, default=4.0, help="each target's interval (default 4 s)")
    parser.add_argument("--jitter", type=float, default=0.0,
                        help="scheduler.jitter (default 0: the daemon's 5 s default, capped at half the interval, "
                             "would make ~30 %% of the runs of a 4 s interval skips)")
    parser.add_argument("--no-install", action="store_true", help="reuse bench/out/venv as it is")
    parser.add_argument("--python", help="measure the sse-monitor installed for this interpreter or venv instead "
                                         "(nothing is installed)")
    parser.add_argument("--extras", default="", help="pip extras to install with it, e.g. 'fast' (uvloop); default "
                                                     "none, as the README installs it")
    parser.add_argument("--sim-python", default=sys.executable,
                        help="the interpreter that runs this tree's simulator (default: the one running this script)")
    parser.add_argument("--cores", default="0,1", help="MONITOR,SIMULATOR cores (default 0,1)")
    parser.add_argument("--out", default=str(RESULTS))
    opts = parser.parse_args(argv)
    quick = opts.quick
    opts.window = opts.window or (10.0 if quick else 30.0)
    opts.warmup = opts.warmup or (6.0 if quick else 10.0)
    w = Workload(opts)
    if opts.warmup < w.interval + 1:
        raise SystemExit(f"--warmup must be at least the interval + 1 s ({w.interval + 1:g})")
    default_levels = "200,1000,flood" if quick else "50,200,500,1000,cap,flood,steady"
    levels = [level_spec(x.strip(), w) for x in (default_levels if opts.levels is None else opts.levels).split(",")
              if x.strip()]
    bb_levels = [level_spec(x.strip(), w) for x in (("200" if quick else "50,200,500,1000") if opts.blackbox_levels
                                                     is None else opts.blackbox_levels).split(",") if x.strip()]
    if any(b["kind"] != "streams" for b in bb_levels):
        raise SystemExit("--blackbox-levels: stream counts only")
    sbs_levels = [level_spec(x.strip(), w) for x in (("200" if quick else "200,1000") if opts.side_by_side_levels
                                                      is None else opts.side_by_side_levels).split(",") if x.strip()]
    if any(b["kind"] != "streams" for b in sbs_levels):
        raise SystemExit("--side-by-side-levels: stream counts only")

    available = sorted(os.sched_getaffinity(0))
    monitor_core, sim_core = (int(c) for c in opts.cores.split(","))
    if len(available) < 2 or monitor_core not in available or sim_core not in available:
        say(f"warning: cores {opts.cores} not both available ({available}): nothing is pinned")
        cores: tuple = (None, None)
    else:
        cores = (monitor_core, sim_core)
        os.sched_setaffinity(0, {sim_core})  # this process (pip, the blackbox driver) stays off the monitor core
    started = time.monotonic()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    if opts.python:
        if opts.no_install:
            say("--python: nothing is installed anyway")
    elif not opts.no_install:
        install(opts)
    python = resolve_python(opts)
    installed = describe_install(python)
    if installed["editable_or_source_tree"]:
        say("warning: the measured interpreter imports monitor/ from this tree (an editable install?)")
    env = {"cores": cores, "daemon_cmd": daemon_command(python), "sim_python": opts.sim_python}
    binary = find_blackbox()
    results: dict[str, Any] = {
        "benchmark": "bench/process.py: the installed `sse-monitor run` process, against the simulator on loopback",
        "machine": machine(),
        "code": code_state(),
        "installed": installed,
        "daemon_command": env["daemon_cmd"],
        "placement": {"monitor_core": cores[0], "simulator_core": cores[1], "niceness": os.getpriority(
            os.PRIO_PROCESS, 0), "bench_process_core": cores[1]},
        "settings": {"quick": quick, "window_seconds": opts.window, "warmup_seconds": opts.warmup,
                     "ttft": w.ttft, "tokens": w.tokens, "rate": w.rate, "interval": w.interval,
                     "stream_seconds": w.stream_seconds, "events_per_stream": w.events_per_stream,
                     "dialect": "openai-chat", "scheduler_jitter": w.jitter,
                     "non_default_settings": [x for x in (
                         "targets and their interval", "server.listen 127.0.0.1:0 (loopback)",
                         f"scheduler.jitter {w.jitter:g}s" if w.jitter != DEFAULT_JITTER else None,
                         "scheduler.max_concurrent where the level needs more than 50") if x]},
        "levels": [], "blackbox": [], "side_by_side": [], "steady": [],
    }
    say(f"measuring {' '.join(env['daemon_cmd'])} (sse-monitor {installed.get('sse-monitor')}, Python "
        f"{installed['python']}, {'uvloop' if installed['uvloop'] else 'asyncio event loop (no uvloop installed)'})"
        f"; monitor core {cores[0]}, simulator core {cores[1]}")
    if installed["differs_from_work_tree"]:
        say(f"  note: the install differs from this tree in {', '.join(installed['differs_from_work_tree'])}")
    for spec in levels:
        try:
            if spec["kind"] == "steady":
                from steady import steady_pass
                results["steady"].append(steady_pass(spec, w, opts, env))
                continue
            results["levels"].append(daemon_pass(spec, w, opts, env))
        except (RuntimeError, OSError) as exc:
            say(f"  level {spec['name']} failed: {exc}")
            results.setdefault("failures", []).append({"level": spec["name"], "error": str(exc)})
    if not bb_levels:
        results["blackbox_skipped"] = "no --blackbox-levels"
    elif binary is None:
        results["blackbox_skipped"] = ("prometheus-blackbox-exporter is not installed (`apt-get install -y "
                                       "prometheus-blackbox-exporter`)")
        say(f"blackbox_exporter: skipped: {results['blackbox_skipped']}")
    else:
        results["blackbox_version"] = blackbox_version(binary)
        for spec in bb_levels:
            try:
                results["blackbox"].append(blackbox_pass(spec, w, opts, env, binary))
            except (RuntimeError, OSError) as exc:
                say(f"  blackbox level {spec['name']} failed: {exc}")
                results.setdefault("failures", []).append({"level": f"blackbox {spec['name']}", "error": str(exc)})
    if not sbs_levels:
        results["side_by_side_skipped"] = "no --side-by-side-levels"
    elif binary is None:
        results["side_by_side_skipped"] = "prometheus-blackbox-exporter is not installed"
        say(f"side by side: skipped: {results['side_by_side_skipped']}")
    else:
        results.setdefault("blackbox_version", blackbox_version(binary))
        for spec in sbs_levels:
            try:
                results["side_by_side"].append(side_by_side_pass(spec, w, opts, env, binary))
            except (RuntimeError, OSError) as exc:
                say(f"  side-by-side level {spec['name']} failed: {exc}")
                results.setdefault("failures", []).append({"level": f"side by side {spec['name']}",
                                                           "error": str(exc)})
    results["targets"] = evaluate(results["levels"], results["blackbox"], results["side_by_side"], results["steady"])
    results["seconds"] = round(time.monotonic() - started, 1)
    Path(opts.out).write_text(json.dumps(results, indent=2) + "\n")

    m, i = results["machine"], installed
    print(f"\n{m['cpu_model']}, {m['cores']} cores, kernel {m['kernel']}, {m['date']}")
    print(f"measured: {' '.join(env['daemon_cmd'])} run — sse-monitor {i.get('sse-monitor')} installed from "
          f"{results['code']['describe'] or '?'} (uncommitted: {len(results['code']['uncommitted'])} files), Python "
          f"{i['python']}, {'uvloop' if i['uvloop'] else 'asyncio loop (no uvloop)'}, httpx {i.get('httpx')}")
    print(f"monitor on core {cores[0]}, simulator on core {cores[1]}, niceness "
          f"{results['placement']['niceness']}; streams: openai-chat, first token after {w.ttft:g} s, {w.rate:g} "
          f"events/s, {w.stream_seconds:.2f} s, every {w.interval:g} s; scheduler.jitter {w.jitter:g} s"
          + (" (default 5 s)" if w.jitter != DEFAULT_JITTER else "") + f"; window {opts.window:g} s after "
          f"{opts.warmup:g} s\n")
    print(table(results))
    for st in results["steady"]:
        g = st["groups"]["all"]
        print(f"\nsteady {st['level']}: {st['targets']} targets every {st['interval_seconds']:g} s "
              f"(~{_f(st['mean_open_streams'], 0)} streams open), history {'full (100 runs each)' if st['prefilled'] else 'filling from empty'}; "
              f"RSS {st['steady_rss_mb']} MB at the end of {st['window_seconds']:g} s (min {st['rss_mb_min']}, max "
              f"{st['rss_mb_max']}, growth {st['rss_growth_mb_per_hour']} MB/h), VmHWM {st['peak_rss_mb']} MB; history "
              f"file {st['history_file_mb']} MB; history writer {_f(100 * (st['history_writer_share_of_daemon_cpu'] or 0), 1)} % "
              f"of the daemon's CPU ({_f(100 * st['daemon_core_share'], 0)} % of a core); TTFT error p50/p99/max "
              f"{_triple(g['ttft_error'])} ms")
    print()
    for key, v in results["targets"].items():
        if v["target"] is None:
            print(f"  {key:40s} {_f(v['value']):>8s}  (information: {v['pass']})")
            continue
        state = "n/a" if v["met"] is None else "met" if v["met"] else "MISSED"
        where = f"  [{v['pass']}]" if v.get("pass") else ""
        print(f"  {key:40s} {_f(v['value']):>8s}  (target {v['target']})  {state}{where}")
    passes = ([(lv["level"], lv) for lv in results["levels"]]
              + [(f"blackbox alone {b['level']}", b) for b in results["blackbox"]]
              + [(f"side by side {p['level']}", p) for p in results["side_by_side"]])
    noisy = [label for label, x in passes
             if max(x.get("monitor_core_foreign_share", 0.0), x.get("simulator_core_foreign_share", 0.0)) > 0.10]
    if noisy:
        print(f"\nwarning: other processes used more than 10 % of a core during: {', '.join(noisy)}; those figures "
              "measure the neighbours too")
    print(f"\nwrote {opts.out} in {results['seconds']} s (logs, configs and truth logs in "
          f"{RUN_DIR.relative_to(ROOT)}/)")
    return 1 if results.get("failures") else 0


if __name__ == "__main__":
    sys.exit(main())
