"""`python -m monitor.simulator`: the simulator on a port, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse

from . import __doc__ as DESCRIPTION
from .server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m monitor.simulator", description=DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900, help="0 picks a free port (the URL printed tells which)")
    parser.add_argument("--truth-log", metavar="FILE",
                        help="append one JSON line per request: wall-clock times of its receipt, first byte and first "
                             "token (a benchmark's ground truth; the `tag` parameter labels a request)")
    parser.add_argument("--truth-max-records", type=int, default=1_000_000, metavar="N",
                        help="records written at most; the rest are counted (default 1,000,000)")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.truth_log, args.truth_max_records)


if __name__ == "__main__":
    main()
