"""The process users run, measured: `sse-monitor run`, installed with pip, probing the simulator on loopback.

    python3 bench/process.py --quick     # ~3 minutes: 200 streams, the probes level, 1,000 streams, the flood,
                                         # blackbox alone at 200, the daemon and blackbox side by side at 200
    python3 bench/process.py             # ~25 minutes: 50, 200, 500, 1,000, 2,000 streams, the probes level, 230
                                         # targets at the default cap, the flood, 1,000 targets with full history;
                                         # blackbox_exporter alone at 50 to 2,000; side by side at 200 and 1,000

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
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from blackbox import blackbox_pass, blackbox_version, find_blackbox
from daemon_pass import daemon_pass
from install import code_state, daemon_command, describe_install, install, machine, resolve_python, wakeup_cost
from processes import say
from cpu_profile import find_py_spy
from report import _f, _triple, evaluate, table
from side_by_side import side_by_side_pass
from workload import DEFAULT_JITTER, RESULTS, ROOT, RUN_DIR, Workload, level_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer levels, shorter windows (<= 3 minutes)")
    parser.add_argument("--levels", help="comma-separated: stream counts, cap[:TARGETS], flood[:HEALTHY], "
                                         "probes[:TARGETS], steady[:TARGETS] (default 50,200,probes,500,1000,2000,"
                                         "cap,flood,steady; quick 200,probes,1000,flood)")
    parser.add_argument("--steady-window", type=float, default=300.0,
                        help="the steady level's window after its warm-up (five intervals), seconds (default 300)")
    parser.add_argument("--steady-no-prefill", dest="steady_prefill", action="store_false",
                        help="start the steady level with an empty history (the RSS curve shows it filling)")
    parser.add_argument("--blackbox-levels", help="stream counts for blackbox_exporter (default 50,200,500,1000,2000; "
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
    parser.add_argument("--profile", metavar="DIR",
                        help="record where the daemon's CPU goes over each level's window with py-spy (must be on "
                             "PATH): DIR/profile-LEVEL.txt (collapsed stacks) and a summary in the JSON; with perf on "
                             "PATH also DIR/perf-LEVEL.data and the CPU by part (interpreter, kernel, uvloop, ...)")
    parser.add_argument("--cores", default="0,1", help="MONITOR,SIMULATOR cores (default 0,1)")
    parser.add_argument("--out", default=str(RESULTS))
    opts = parser.parse_args(argv)
    quick = opts.quick
    opts.window = opts.window or (10.0 if quick else 30.0)
    opts.warmup = opts.warmup or (6.0 if quick else 10.0)
    w = Workload(opts)
    if opts.warmup < w.interval + 1:
        raise SystemExit(f"--warmup must be at least the interval + 1 s ({w.interval + 1:g})")
    default_levels = "200,probes,1000,flood" if quick else "50,200,probes,500,1000,2000,cap,flood,steady"
    levels = [level_spec(x.strip(), w) for x in (default_levels if opts.levels is None else opts.levels).split(",")
              if x.strip()]
    bb_levels = [level_spec(x.strip(), w) for x in (("200" if quick else "50,200,500,1000,2000") if opts.blackbox_levels
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
    if opts.profile and not find_py_spy():
        raise SystemExit("--profile needs py-spy on PATH: python3 -m pip install py-spy")
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
        "machine": {**machine(), "wakeup_cost": wakeup_cost(python, cores[0])},
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
    wakeups = m["wakeup_cost"].get("cpu_us_per_wakeup_by_sleep")
    if wakeups:
        print("one wake-up of an idle event loop costs " + ", ".join(f"{us} us after {after}" for after, us in
                                                                    wakeups.items()) + " of CPU on the monitor's core")
    print(f"measured: {' '.join(env['daemon_cmd'])} run — sse-monitor {i.get('sse-monitor')} installed from "
          f"{results['code']['describe'] or '?'} (uncommitted: {len(results['code']['uncommitted'])} files), Python "
          f"{i['python']}, {'uvloop' if i['uvloop'] else 'asyncio loop (no uvloop)'}, httpx {i.get('httpx')}")
    print(f"monitor on core {cores[0]}, simulator on core {cores[1]}, niceness "
          f"{results['placement']['niceness']}; streams: openai-chat, first token after {w.ttft:g} s, {w.rate:g} "
          f"events/s, {w.stream_seconds:.2f} s, every {w.interval:g} s; scheduler.jitter {w.jitter:g} s"
          + (" (default 5 s)" if w.jitter != DEFAULT_JITTER else "") + f"; window {opts.window:g} s after "
          f"{opts.warmup:g} s\n")
    print(table(results))
    for lv in results["levels"]:
        parts = lv.get("profile", {}).get("machine", {}).get("parts")
        if parts:
            print(f"where the daemon's CPU went at level {lv['level']} (perf, by object): "
                  + ", ".join(f"{part} {100 * share:.1f} %" for part, share in parts.items()))
    for st in results["steady"]:
        g = st["groups"]["all"]
        print(f"\nsteady {st['level']}: {st['targets']} targets every {st['interval_seconds']:g} s "
              f"(~{_f(st['mean_open_streams'], 0)} streams open), history {'full (100 runs each)' if st['prefilled'] else 'filling from empty'}; "
              f"RSS {st['steady_rss_mb']} MB at the end of {st['window_seconds']:g} s (min {st['rss_mb_min']}, max "
              f"{st['rss_mb_max']}, growth {st['rss_growth_mb_per_hour']} MB/h), VmHWM {st['peak_rss_mb']} MB; history "
              f"file {st['history_file_mb']} MB; history writer {_f(100 * (st['history_writer_share_of_daemon_cpu'] or 0), 1)} % "
              f"of the daemon's CPU ({_f(100 * st['daemon_core_share'], 0)} % of a core); TTFT error p50/p99/max "
              f"{_triple(g['ttft_error'])} ms")
        sc = st.get("metrics_scrapes")
        if sc:
            print(f"  /metrics scraped every {sc['every_seconds']:g} s as Prometheus does: {sc['scrapes']} scrapes, "
                  f"{sc['failures']} failed, {sc['body_mb']} MB a page, p50 {sc['seconds_p50']} s, max "
                  f"{sc['seconds_max']} s")
    split = results["targets"]["cpu_us_per_event_at_200"].get("split")
    if split:
        print(f"\nCPU per event and per probe, apart (fitted from the levels {' and '.join(split['from'])}: "
              f"{split['method']}): {split['cpu_us_per_event']} us per event, "
              f"{split['cpu_us_per_probe_outside_events']} us per probe outside its events")
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
