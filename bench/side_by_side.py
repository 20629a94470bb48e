"""Side by side: the daemon and blackbox_exporter on the same core at the same time, against one simulator."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from blackbox import BlackboxProcess, blackbox_figures, blackbox_targets, drive_blackbox
from daemon_pass import daemon_figures
from processes import DaemonProcess, Simulator, core_busy, proc_cpu, proc_status_kb, say, sleep_until
from records import read_truth
from report import _f
from workload import DEFAULT_CAP, ROOT, RUN_DIR, Workload, write_config

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
