"""What a daemon costs while its streams are open but quiet: the idle floor of the probe path.

    python3 bench/quiet.py                 # 10 streams of one event every 2 s, 30 s window; ~1 minute
    python3 bench/quiet.py --streams 50 --window 60

A monitor of a few slow endpoints spends most of its time waiting on open streams. This runs the daemon installed by
`bench/process.py` (bench/out/venv; run that once first, or give --python) with its defaults but the targets, on one
core, against this tree's simulator on the other: N targets, each a stream that sends its first token after 0.5 s and
then one event every 2 s for longer than the window, so every stream stays open and nearly silent (the runs due
meanwhile are skipped, as a stream longer than its interval makes them). It prints the
daemon's CPU over the window (utime + stime from /proc) as a share of one core, and the events it read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from install import VENV  # noqa: E402
from processes import DaemonProcess, Simulator, proc_cpu, say  # noqa: E402
from workload import RUN_DIR  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=lambda v: max(1, int(v)), default=10, help="targets (at least 1)")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--python", default=str(VENV / "bin" / "python"), help="the interpreter sse-monitor is "
                        "installed in (default: bench/process.py's venv)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    opts = parser.parse_args()
    bin_dir = Path(opts.python).parent
    if not (bin_dir / "sse-monitor").exists():
        raise SystemExit(f"no sse-monitor beside {opts.python}: run `python3 bench/process.py --quick` once first")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    events = int((opts.window + 30) / 2)  # one every 2 s, past the window's end
    simulator = Simulator(sys.executable, 1, RUN_DIR / "quiet-truth.jsonl", RUN_DIR / "quiet-simulator.stderr")
    config = RUN_DIR / "config-quiet.yaml"
    try:
        targets = "\n".join(
            f"  - {{name: q{i:03d}, url: '{simulator.base_url}/v1/chat/completions?ttft=0.5&tokens={events}"
            f"&rate=0.5&tag=q{i:03d}'}}" for i in range(opts.streams))
        # the first runs are spread over the interval; later runs find their stream still open and are skipped
        config.write_text(f"defaults: {{interval: 10s}}\nscheduler: {{jitter: 0s}}\n"
                          f"server: {{listen: '127.0.0.1:0'}}\ntargets:\n{targets}\n")
        daemon = DaemonProcess([str(bin_dir / "sse-monitor")], 0, config, RUN_DIR / "quiet-daemon.log",
                               RUN_DIR / "quiet-daemon.stderr")
        try:
            daemon.wait_started(30)
            time.sleep(12)  # every stream open
            cpu0, t0 = proc_cpu(daemon.pid), time.monotonic()
            time.sleep(opts.window)
            cpu1, t1 = proc_cpu(daemon.pid), time.monotonic()
        finally:
            daemon.stop()
    finally:
        simulator.stop()
    share = (cpu1 - cpu0) / (t1 - t0)
    figures = {"streams": opts.streams, "window_seconds": round(t1 - t0, 1), "events_per_second": opts.streams * 0.5,
               "daemon_core_share": round(share, 4)}
    say(f"{opts.streams} quiet streams (an event every 2 s each): the daemon used {share * 100:.2f} % of a core "
        f"over {t1 - t0:.0f} s")
    if opts.out:
        opts.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
