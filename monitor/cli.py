"""The `sse-monitor` command: probe, simulate, run, check-config, config-schema, demo, canary, chain-check."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from . import __version__
from .cli_types import positive as _positive
from .dialects import DIALECTS
from .result import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_OUTPUT_TOKENS,
    DEFAULT_MAX_STREAM_BYTES,
    DEFAULT_PROMPT,
    DEFAULT_TIMEOUT,
    DEFAULT_TTFT_THRESHOLD,
    Price,
    ProbeSpec,
    ResumeSpec,
)

EXIT_OK, EXIT_ALERT, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A bad command line: one line on stderr, exit status 2."""


def run_async(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run on uvloop (a dependency on CPython outside Windows; cheaper per event), else on asyncio's own loop."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def _http_url(url: str) -> str:
    from .config.values import is_http_url

    if not is_http_url(url):  # as a target's url is checked: scheme, host, port (e.g. "http://[::1:9/" has none)
        raise UsageError(f"URL: expected an http:// or https:// URL with a host, got {url!r}")
    return url


def _price(text: str) -> Price:
    """--price INPUT,OUTPUT[,CURRENCY]: per million tokens, checked as the configuration's `price:` is."""
    from .config.values import _v_currency, _v_per_million

    parts = [part.strip() for part in text.split(",")]
    try:
        if len(parts) not in (2, 3):
            raise ValueError(f"expected INPUT,OUTPUT[,CURRENCY] per million tokens (e.g. 0.15,0.60,USD), got {text!r}")
        currency = _v_currency(parts[2]) if len(parts) == 3 else "USD"
        return Price(_v_per_million(parts[0]), _v_per_million(parts[1]), currency)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    """A size as the configuration file writes one: 67108864, 64MiB, 10MB."""
    from .config import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not name or any(c.isspace() for c in name):
        # the value may be a secret: never echo it
        raise UsageError(f"-H: expected 'Name: value', got a header without a name and a colon ({name[:20]!r}...)")
    return name, value.strip()


def parse_body(text: str) -> bytes:
    if text.startswith("@"):
        path = text[1:]
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise UsageError(f"--body: cannot read {path}: {exc.strerror}") from None
    try:
        json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--body: expected JSON or @file, got invalid JSON ({exc})") from None
    return text.encode()


def spec_from_args(args: argparse.Namespace) -> ProbeSpec:
    _http_url(args.url)
    if args.idle_timeout > args.timeout:
        raise UsageError(f"--idle-timeout ({args.idle_timeout:g} s) must not be longer than --timeout ({args.timeout:g} s)")
    if args.max_stream_bytes < DEFAULT_MAX_EVENT_BYTES:  # as in the configuration: the budget holds the largest event
        from .config import _fmt_size

        raise UsageError(f"--max-stream-bytes ({_fmt_size(args.max_stream_bytes)}) must not be less than the event "
                         f"size limit ({_fmt_size(DEFAULT_MAX_EVENT_BYTES)})")
    if args.min_events is not None and args.min_events > args.max_events:
        raise UsageError(f"--min-events ({args.min_events}) must not be more than --max-events ({args.max_events})")
    resume = _resume_from_args(args)
    return ProbeSpec(
        url=args.url,
        dialect=args.dialect,
        prompt=args.prompt,
        model=args.model,
        headers=dict(parse_header(h) for h in args.header),
        body=parse_body(args.body) if args.body is not None else None,
        method=args.method,
        ttft_threshold=args.ttft_threshold,
        min_duration=args.min_duration,
        min_events=args.min_events,
        timeout=args.timeout,
        idle_timeout=args.idle_timeout,
        max_stream_bytes=args.max_stream_bytes,
        max_events=args.max_events,
        heartbeat_events=tuple(args.heartbeat_event),
        terminal_event=args.terminal_event,
        terminal_data=args.terminal_data,
        error_event=args.error_event,
        verify_tls=not args.insecure,
        trace=args.trace,
        resume=resume,
        max_output_tokens=args.max_output_tokens,
        price=args.price,
    )


def _resume_from_args(args: argparse.Namespace) -> ResumeSpec | None:
    """--resume-after N, with --resume-query-param NAME and/or without --no-resume-header."""
    if args.resume_after is None:
        for given, option in ((args.resume_query_param, "--resume-query-param"), (args.no_resume_header, "--no-resume-header")):
            if given:
                raise UsageError(f"{option} needs --resume-after N (the token events before the connection is dropped)")
        return None
    if args.resume_query_param is not None:
        from .config.values import _v_query_param

        try:
            _v_query_param(args.resume_query_param)
        except ValueError as exc:
            raise UsageError(f"--resume-query-param: {exc}") from None
    if args.no_resume_header and args.resume_query_param is None:
        raise UsageError("--no-resume-header needs --resume-query-param NAME: the reconnect must carry the last event id")
    return ResumeSpec(after_events=args.resume_after, header=not args.no_resume_header, query_param=args.resume_query_param)


class TerminalLine:
    """One line on a terminal, rewritten in place (\\r, erase line) and cleared at the end; never raises."""

    CLEAR = "\r\x1b[K"

    def __init__(self, stream) -> None:
        self.stream = stream
        self._drawn = False

    def write(self, text: str) -> None:
        try:
            self.stream.write(self.CLEAR + text)
            self.stream.flush()
            self._drawn = True
        except (OSError, ValueError):
            pass

    def clear(self) -> None:
        if self._drawn:
            self.write("")
            self._drawn = False


class LiveProgress:
    """While a probe runs: elapsed time, events so far, TTFT once seen, the longest silence so far, on one terminal
    line rewritten at most `interval` apart."""

    def __init__(self, stream, interval: float = 0.1) -> None:
        import time

        self.terminal = TerminalLine(stream)
        self.interval = interval
        self.result = None
        self._clock = time.monotonic
        self._wall = time.time
        self._began = self._clock()
        self._last_draw = -1e9

    def line(self) -> str:
        r = self.result
        if r is None or not r.started_at:
            return f"sse-monitor probe: {self._clock() - self._began:.1f} s, connecting..."
        elapsed = max(self._wall() - r.started_at, 0.0)
        parts = [f"{elapsed:.1f} s", f"{r.events} events ({r.token_events} tokens, {r.comments} comments)"]
        if r.headers_seconds is None:
            parts.append("waiting for the response")
        parts.append(f"TTFT {r.ttft_seconds:.3f} s" if r.ttft_seconds is not None else "TTFT not yet")
        last = max([t for t in (r.first_byte_seconds, r.token_times[-1] if r.token_times else None,
                                r.comment_times[-1] if r.comment_times else None) if t is not None], default=None)
        longest = r.max_silence_seconds or 0.0
        if last is not None:
            longest = max(longest, elapsed - last)
        parts.append(f"longest silence {longest:.1f} s")
        return "sse-monitor probe: " + ", ".join(parts)

    def draw(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        self.terminal.write(self.line())

    def on_progress(self, result) -> None:
        try:
            self.result = result
            self.draw()
        except Exception:  # a display must never break a probe
            pass

    def clear(self) -> None:
        self.terminal.clear()


def cmd_probe(args: argparse.Namespace) -> int:
    import dataclasses

    from .probe import run_probe
    from .report import summary, to_json

    spec = spec_from_args(args)
    if args.html:
        spec = dataclasses.replace(spec, trace=True)  # the page shows every event
    live = LiveProgress(sys.stderr) if not args.json and _is_tty(sys.stderr) else None

    async def probe():
        if live is None:
            return await run_probe(spec)

        async def tick() -> None:  # keeps the elapsed time moving while no byte arrives
            while True:
                live.draw(force=True)
                await asyncio.sleep(live.interval)

        ticker = asyncio.create_task(tick())
        try:
            return await run_probe(spec, on_progress=live.on_progress)
        finally:
            ticker.cancel()

    try:
        result = run_async(probe)
    finally:
        if live is not None:
            live.clear()
    if args.html:
        from .html_report import html_page

        try:
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(html_page(result))
        except OSError as exc:
            raise UsageError(f"--html: cannot write {args.html}: {exc.strerror}") from None
    shown = result if args.trace or result.trace is None else dataclasses.replace(result, trace=None)
    print(to_json(shown) if args.json else summary(shown), flush=True)
    return EXIT_ALERT if result.alerts else EXIT_OK


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulator import serve

    serve(args.host, args.port)
    return EXIT_OK


def _or_exit(load: Any, *args: Any) -> Any:
    """What `load` returns; on a configuration error, every message on stderr and exit status 2."""
    from .config import ConfigError

    try:
        return load(*args)
    except ConfigError as exc:  # the web config's errors too
        for message in exc.messages:
            print(message, file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def _load(path: str, environ=None):
    from .config import load_config

    return _or_exit(load_config, path, environ)


def _load_web_config(path: str | None):
    """--web.config.file, validated with every file it names before anything starts; exit 2 with every problem."""
    if path is None:
        return None
    from .webconfig import load_web_config

    return _or_exit(load_web_config, path)


def _web_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"web_config": _load_web_config(args.web_config_file), "enable_lifecycle": args.web_enable_lifecycle}


def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import Daemon, tune_gc
    from .logs import configure_logging
    from .sharding import ALL, parse_shard

    config = _load(args.config)
    web = _web_options(args)
    shard = ALL
    if args.shard:
        try:
            shard = parse_shard(args.shard)
        except ValueError as exc:
            print(f"--shard: {exc}", file=sys.stderr)
            return EXIT_USAGE
    configure_logging(args.log_format, args.log_level)

    async def main() -> None:
        daemon = Daemon(config, listen=args.listen, shard=shard, data_dir=args.data_dir, **web)
        tune_gc()
        await daemon.run(handle_signals=True)

    run_async(main)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    import os
    from importlib.resources import as_file, files

    from .daemon import Daemon, tune_gc
    from .logs import configure_logging
    from .canary import RunningCanary
    from .simulator import RunningSimulator

    web = _web_options(args)
    configure_logging(args.log_format, args.log_level)

    async def main() -> None:
        async with RunningSimulator() as sim, RunningCanary() as canary:
            environ = {**os.environ, "DEMO_ORIGIN": sim.base_url, "DEMO_CANARY": canary.base_url}
            with as_file(files("monitor") / "demo.yaml") as path:
                daemon = Daemon(_load(str(path), environ), listen=args.listen, environ=environ,
                                data_dir=args.data_dir, **web)

                def announce() -> None:
                    print(
                        f"\nsse-monitor demo: probing {len(daemon.targets)} built-in targets on the simulator at {sim.base_url}\n"
                        f"  landing page  {daemon.base_url}/\n"
                        f"  metrics       {daemon.base_url}/metrics\n"
                        f"  chain check   {daemon.base_url}/api/v1/chain-checks (the embedded canary at {canary.base_url})\n"
                        "  first results within 15 s; Ctrl-C stops.\n",
                        file=sys.stderr,
                        flush=True,
                    )

                tune_gc()
                await daemon.run(handle_signals=True, on_ready=announce)

    run_async(main)
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from .config import check_config

    status = check_config(args.config, data_dir=args.data_dir)
    if args.web_config_file is not None:
        web = _load_web_config(args.web_config_file)
        parts = (["TLS"] if web.tls else []) + ([f"basic auth ({len(web.users)} users)"] if web.users else [])
        print(f"{args.web_config_file}: OK, {' and '.join(parts) or 'no TLS, no authentication'}")
    return status


def cmd_config_schema(args: argparse.Namespace) -> int:
    from .config.schema import config_json_schema

    print(json.dumps(config_json_schema(), indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_canary(args: argparse.Namespace) -> int:
    from .canary import run

    return run(args)


def cmd_chain_check(args: argparse.Namespace) -> int:
    from .chaincheck import ChainCheckSpec, check_chain, summary, to_json

    spec = ChainCheckSpec(url=_http_url(args.url), expected_duration=args.expected_duration, max_idle=args.max_idle,
                          max_duration=args.max_duration, headers=dict(parse_header(h) for h in args.header),
                          verify_tls=not args.insecure)
    status = StatusLine(sys.stderr) if not args.json and _is_tty(sys.stderr) else None
    try:
        report = run_async(lambda: check_chain(spec, status.show if status else lambda _: None))
    finally:
        if status is not None:
            status.clear()
    print(to_json(report) if args.json else summary(report), flush=True)
    return EXIT_OK if report.ok else EXIT_ALERT


class StatusLine:
    """The latest step of a long command, with the time since it began, on one terminal line."""

    def __init__(self, stream) -> None:
        import time

        self.terminal, self._clock = TerminalLine(stream), time.monotonic
        self._began = self._clock()

    def show(self, text: str) -> None:
        self.terminal.write(f"[{self._clock() - self._began:.0f} s] {text}")

    def clear(self) -> None:
        self.terminal.clear()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sse-monitor", description="Synthetic monitor for Server-Sent Events streams.")
    parser.add_argument("--version", action="version", version=f"sse-monitor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("probe", help="probe one streaming endpoint once and report what a user would see")
    p.add_argument("url", metavar="URL", help="the streaming endpoint (a URL without a path gets the dialect's path)")
    p.add_argument("--dialect", choices=list(DIALECTS), default="openai-chat")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help="the prompt to send (default: a known-slow one)")
    p.add_argument("--model", help="the model to ask for (default: the dialect's)")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'", help="a request header (repeatable)")
    p.add_argument("--body", metavar="JSON|@file", help="the request body, replacing the dialect's")
    p.add_argument("--method", help="the HTTP method (default: POST for LLM dialects, GET for generic without a body)")
    p.add_argument("--ttft-threshold", type=_positive(float), default=DEFAULT_TTFT_THRESHOLD, metavar="S")
    p.add_argument("--min-duration", type=_positive(float), metavar="S", help="a shorter stream has ended early")
    p.add_argument("--min-events", type=_positive(int), metavar="N", help="fewer token events means it ended early")
    p.add_argument("--timeout", type=_positive(float), default=DEFAULT_TIMEOUT, metavar="S", help="the whole probe")
    p.add_argument("--idle-timeout", type=_positive(float), default=DEFAULT_IDLE_TIMEOUT, metavar="S", help="no byte for this long ends the stream")
    p.add_argument("--max-stream-bytes", type=_size, default=DEFAULT_MAX_STREAM_BYTES, metavar="N",
                   help="the stream's byte budget, as 10MB or 1GiB (default 64MiB); more fails as too_many_bytes")
    p.add_argument("--max-events", type=_positive(int), default=DEFAULT_MAX_EVENTS, metavar="N",
                   help="the stream's budget of events and comments (default 200000); more fails as too_many_events")
    p.add_argument("--max-output-tokens", type=_positive(int), default=DEFAULT_MAX_OUTPUT_TOKENS, metavar="N",
                   help="the answer's token cap in the dialect's own body (max_completion_tokens, max_output_tokens, "
                        "max_tokens, generationConfig.maxOutputTokens; default 1024)")
    p.add_argument("--price", type=_price, metavar="IN,OUT[,CUR]",
                   help="what a million input and output tokens cost (e.g. 0.15,0.60,USD): the run's cost")
    p.add_argument("--heartbeat-event", action="append", default=[], metavar="TYPE", help="generic: an event type that is a heartbeat")
    p.add_argument("--terminal-event", metavar="TYPE", help="generic: the event type that ends the stream")
    p.add_argument("--terminal-data", metavar="DATA", help="generic: the data value that ends the stream")
    p.add_argument("--error-event", metavar="TYPE", help="generic: the event type that ends the stream with an error")
    p.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--trace", action="store_true", help="every event and comment with its arrival time")
    p.add_argument("--html", metavar="FILE", help="also write one self-contained HTML page: summary, timeline, "
                                                  "response headers and the event trace")
    p.add_argument("--resume-after", type=_positive(int), metavar="N",
                   help="the resumption check: after N token events drop the connection, reconnect with the last "
                        "event id (Last-Event-ID) and check that the stream continues right after it")
    p.add_argument("--resume-query-param", metavar="NAME",
                   help="with --resume-after: also send the last event id as this query parameter (e.g. resume)")
    p.add_argument("--no-resume-header", action="store_true",
                   help="with --resume-after: send no Last-Event-ID header (the query parameter alone)")
    p.set_defaults(func=cmd_probe)

    def logging_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--log-format", choices=["auto", "json", "console"], default="auto",
                       help="auto: console on a terminal, JSON lines otherwise")
        p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")

    def data_dir_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", metavar="DIR", default=None,
                       help="where the run history (sse-monitor.db) is kept unless storage.path says otherwise "
                            "(default: $SSE_MONITOR_DATA_DIR, else ./data)")

    def web_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--web.config.file", dest="web_config_file", metavar="FILE",
                       help="TLS and basic auth for every endpoint, in the exporter-toolkit's format "
                            "(tls_server_config, basic_auth_users)")
        p.add_argument("--web.enable-lifecycle", dest="web_enable_lifecycle", action="store_true",
                       help="answer POST /-/reload (SIGHUP always reloads)")

    p = sub.add_parser("run", help="run the monitoring daemon: scheduled probes, /metrics, alerts")
    p.add_argument("--config", required=True, metavar="FILE")
    p.add_argument("--shard", metavar="K/N", default=os.environ.get("SSE_MONITOR_SHARD"),
                   help="probe only this replica's share of the targets (0 <= K < N; auto/N takes K from the end of "
                        "the host name, as a StatefulSet names its pods); default: $SSE_MONITOR_SHARD, else all")
    p.add_argument("--listen", metavar="HOST:PORT", help="where /metrics is served (default: server.listen, 0.0.0.0:9108)")
    data_dir_option(p)
    web_options(p)
    logging_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the simulator and the daemon with built-in targets: real numbers, no config")
    p.add_argument("--listen", default="127.0.0.1:9108", metavar="HOST:PORT")
    data_dir_option(p)
    web_options(p)
    logging_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulate", help="run the reference slow-LLM origin (openai, anthropic, gemini, generic)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8900)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("canary", help="serve streams of known shape, to deploy behind a proxy chain for chain-check")
    from .canary import add_arguments as canary_arguments

    canary_arguments(p)
    p.set_defaults(func=cmd_canary)

    from .chaincheck import DEFAULT_EXPECTED_DURATION, DEFAULT_MAX_IDLE

    p = sub.add_parser("chain-check", help="measure the proxy chain in front of a canary: buffering, compression, "
                                           "heartbeats, idle timeout, stream length; the seeds' checklist as verdicts")
    p.add_argument("url", metavar="URL", help="the canary (`sse-monitor canary`), reached through the chain")
    p.add_argument("--expected-duration", type=_positive(float), default=DEFAULT_EXPECTED_DURATION, metavar="S",
                   help="the longest stream you serve; timeouts should be twice that (default %(default)g s)")
    p.add_argument("--max-idle", type=_positive(float), default=DEFAULT_MAX_IDLE, metavar="S",
                   help="the longest silence tried when searching the idle timeout (default %(default)g s)")
    p.add_argument("--max-duration", type=_positive(float), metavar="S",
                   help="how long a stream with heartbeats is kept open to find a length cap "
                        "(default: twice --expected-duration)")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'",
                   help="a request header for every trial (repeatable), e.g. the chain's auth")
    p.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_chain_check)

    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("config", metavar="FILE")
    p.add_argument("--web.config.file", dest="web_config_file", metavar="FILE", help="validate this web config too")
    data_dir_option(p)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("config-schema", help="print the configuration file's JSON Schema (for YAML editors)")
    p.set_defaults(func=cmd_config_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"sse-monitor {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `sse-monitor check-config FILE | head`: the reader left; no traceback, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's final flush must not fail again
        return 141  # 128 + SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
