"""One daemon pass: the installed `sse-monitor run` against the simulator at one level, and its figures."""

from __future__ import annotations

import argparse
import collections
import shutil
import time
from pathlib import Path
from typing import Any

import cpu_profile as profiling
from processes import DaemonProcess, Simulator, core_busy, proc_cpu, proc_status_kb, say, sleep_until
from records import FLOOD_WAIT_SECONDS, Pairer, _wait_for_log, read_daemon_log, read_truth, summary_ms
from workload import DEFAULT_CAP, ROOT, RUN_DIR, Workload, write_config

LAG = "event_loop_lag"


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
        profiler = perf = None
        if opts.profile:
            profiler = profiling.start(daemon.pid, opts.window, Path(opts.profile) / f"profile-{tag}.txt")
            if profiling.find_perf():
                perf = profiling.perf_start(daemon.pid, opts.window, Path(opts.profile) / f"perf-{tag}.data")
        cpu0, sim0, me0, busy0 = proc_cpu(daemon.pid), proc_cpu(sim.proc.pid), time.process_time(), core_busy(watched)
        rss_samples = []
        while time.time() < w1:  # RSS now and then (cheap reads of /proc)
            time.sleep(min(1.0, max(0.0, w1 - time.time())))
            rss_samples.append(proc_status_kb(daemon.pid, "VmRSS") or 0)
        cpu1, sim1, me1, busy1 = proc_cpu(daemon.pid), proc_cpu(sim.proc.pid), time.process_time(), core_busy(watched)
        real_w1 = time.time()
        profile = profiling.finish(profiler, Path(opts.profile) / f"profile-{tag}.txt") if profiler else None
        if profile is not None and perf is not None:
            profile["machine"] = profiling.perf_finish(perf, Path(opts.profile) / f"perf-{tag}.data")
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
    if profile is not None:
        out["profile"] = profile
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
    out["cpu_us_per_event"] = round(cpu_seconds / events * 1e6, 1) if events else None  # all in: probes' set-up too
    out["probes_in_window"] = len(in_window)
    out["cpu_us_per_probe"] = round(cpu_seconds / len(in_window) * 1e6, 1) if in_window else None  # events too
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
