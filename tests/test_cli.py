"""`sse-monitor probe`'s options reach the ProbeSpec; bad ones exit 2 with one line naming the option."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, sse_monitor
from monitor.cli import EXIT_USAGE, build_parser, main, spec_from_args
from monitor.result import DEFAULT_MAX_EVENTS, DEFAULT_MAX_STREAM_BYTES

URL = "http://127.0.0.1:9/v1/chat/completions"


def spec(*args: str):
    return spec_from_args(build_parser().parse_args(["probe", URL, *args]))


def test_stream_budgets_default_to_the_probes_defaults():
    s = spec()
    assert (s.max_stream_bytes, s.max_events) == (DEFAULT_MAX_STREAM_BYTES, DEFAULT_MAX_EVENTS)


@pytest.mark.parametrize(
    "text, size", [("67108864", 64 * 1024**2), ("10MB", 10_000_000), ("1GiB", 1024**3), ("1MiB", 1024**2)]
)
def test_max_stream_bytes_takes_a_size_as_the_configuration_does(text, size):
    assert spec("--max-stream-bytes", text).max_stream_bytes == size


def test_max_events_reaches_the_spec():
    assert spec("--max-events", "32000", "--min-events", "100").max_events == 32_000
    assert spec("--max-events", "100", "--min-events", "100").min_events == 100


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-stream-bytes", "lots"],
         "argument --max-stream-bytes: expected a size in bytes such as 1048576, 64KiB or 1MiB, got 'lots'"),
        (["--max-stream-bytes", "0"],
         "argument --max-stream-bytes: expected a size in bytes such as 1048576, 64KiB or 1MiB, got '0'"),
        (["--max-events", "0"], "argument --max-events: expected a positive number, got '0'"),
        (["--max-events", "1e5"], "argument --max-events: expected a positive number, got '1e5'"),
    ],
)
def test_bad_budgets_are_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["probe", URL, *args])
    assert exit_info.value.code == EXIT_USAGE
    assert capsys.readouterr().err.splitlines()[-1] == f"sse-monitor probe: error: {message}"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-stream-bytes", "512KiB"],
         "--max-stream-bytes (512KiB) must not be less than the event size limit (1MiB)"),
        (["--max-events", "50", "--min-events", "51"], "--min-events (51) must not be more than --max-events (50)"),
    ],
)
def test_budgets_that_contradict_other_limits_are_usage_errors(args, message, capsys):
    assert main(["probe", URL, *args]) == EXIT_USAGE
    assert capsys.readouterr().err == f"sse-monitor probe: {message}\n"


def test_the_installed_command_lists_the_budget_options():
    proc = sse_monitor("probe", "--help")
    assert proc.returncode == 0
    assert "--max-stream-bytes N" in proc.stdout and "--max-events N" in proc.stdout


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """`sse-monitor check-config FILE | head -1`: the pipe closes before the output is written."""
    config = tmp_path / "c.yaml"
    config.write_text("targets: [{name: a, url: 'http://127.0.0.1:9/'}]\n")
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "check-config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # the reader is gone before the command writes
    err = proc.stderr.read().decode()
    assert proc.wait(30) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err
