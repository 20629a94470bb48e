"""The long-running monitor: probes every target on its schedule, records results, serves /metrics, reloads."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import gc
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from .alerting import AlertmanagerPusher
from .chain_monitor import ChainMonitor
from .config import ConfigError, MonitorConfig, TargetConfig, load_config
from .history import History
from .metrics import Metrics
from .probe import run_probe
from .probe_endpoint import ProbeEndpoint
from .result import ALERT_TTFT_HIGH, CLOCK_KERNEL, WARNING_EVENT_LOOP_LAG, ProbeResult, ProbeSpec
from .scheduler import ProbeScheduler
from .serving import AppServer, split_listen
from .sharding import ALL, Shard
from .web import create_app
from .webconfig import WebConfig

log = structlog.get_logger("sse_monitor")

LAG_SAMPLE_SECONDS = 0.1  # how often the event loop's punctuality is measured
LAG_BOUND_SECONDS = 0.05  # a probe that ran while the loop was this late has untrustworthy timings
STOP_GRACE_SECONDS = 5.0  # in-flight probes get this long to unwind after cancellation

ResultListener = Callable[[TargetConfig, ProbeResult], None]

def tune_gc() -> None:
    """Garbage collection for a process that times streams. Measured (bench/README.md): at 500 streams the p99 timing
    error was 57 ms with CPython's defaults, 3.1 ms with this — full collections over the start-up objects were the
    event loop's longest pauses. Start-up objects (modules, config) are never garbage: freeze them out of every
    collection, and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


class LoopLagMonitor:
    """Measures how late the event loop wakes up, and remembers when it was later than the bound."""

    def __init__(self, metrics: Metrics, bound: float = LAG_BOUND_SECONDS) -> None:
        self.metrics = metrics
        self.bound = bound
        self._late: collections.deque[float] = collections.deque(maxlen=10_000)  # perf_counter times of late wake-ups
        self._sleeping_since: float | None = None  # the sample in progress: when its sleep began
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def lagged_between(self, start: float, end: float) -> bool:
        """Whether the loop was late by more than the bound between `start` and `end`: a late wake-up seen in that
        span, or the sample in progress already overdue at `end` (a probe that finishes right after a stall may run
        before the sample's own wake-up does)."""
        since = self._sleeping_since
        if since is not None and end - since - LAG_SAMPLE_SECONDS > self.bound:
            return True
        return any(start <= t <= end for t in reversed(self._late))

    async def _run(self) -> None:
        while True:
            before = self._sleeping_since = time.perf_counter()
            await asyncio.sleep(LAG_SAMPLE_SECONDS)
            now = time.perf_counter()
            lag = max(0.0, now - before - LAG_SAMPLE_SECONDS)
            self.metrics.lag.observe(lag)
            if lag > self.bound:
                self._late.append(now)


class Daemon:
    """Owns the configuration, the schedule, the metrics and the last result of every target."""

    def __init__(
        self,
        config: MonitorConfig,
        *,
        metrics: Metrics | None = None,
        listen: str | None = None,
        environ: Mapping[str, str] | None = None,
        web_config: WebConfig | None = None,
        enable_lifecycle: bool = False,
        shard: Shard = ALL,
        data_dir: str | None = None,
    ) -> None:
        self.config = config
        self.shard = shard  # this replica probes only the targets that rendezvous hashing gives its index
        self.web_config = web_config  # TLS and basic auth for every endpoint (--web.config.file)
        self.enable_lifecycle = enable_lifecycle  # POST /-/reload answers only with --web.enable-lifecycle
        self.environ = environ  # what ${VAR} expands from on reload (None: the process environment)
        self.metrics = metrics or Metrics(region=config.region)
        self.listen = listen or config.server.listen
        self.targets: dict[str, TargetConfig] = {}
        self.specs: dict[str, ProbeSpec] = {}
        self.last_results: dict[str, ProbeResult] = {}
        # every finished run, numbered per target across restarts (storage.path, or sse-monitor.db in the data dir)
        self.history = History(config.storage.file(data_dir), per_target=config.server.history,
                               retention=config.storage.retention, metrics=self.metrics)
        self.result_listeners: list[ResultListener] = []
        self.scheduler = ProbeScheduler(self._run_target, self._on_skip, jitter=config.scheduler.jitter)
        self.lag = LoopLagMonitor(self.metrics)
        self.chains = ChainMonitor(self.metrics, owns=shard.owns)  # scheduled chain checks (chain_checks:)
        self.alerting = AlertmanagerPusher(config.alertmanager, self._external_url, self._count_send,
                                           region=self.metrics.region)
        self.result_listeners.append(self.alerting.observe)
        self.metrics.alerts_firing.set_function(lambda: len(self.alerting.firing()))
        self.server: AppServer | None = None
        self.probe_endpoint = ProbeEndpoint(
            lambda: self.config.modules,
            lambda module, result: self.metrics.probe_requests.labels(module, result).inc(),
            config.server.max_concurrent_probes,
        )
        self._semaphore = asyncio.Semaphore(config.scheduler.max_concurrent)
        self._in_flight: set[asyncio.Task] = set()
        self._stop = asyncio.Event()
        self._apply(config)
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(time.time())

    @property
    def base_url(self) -> str:
        return self.server.base_url if self.server else ""

    def _external_url(self) -> str:
        return self.config.server.external_url or self.base_url

    def _count_send(self, alertmanager: str, ok: bool) -> None:
        self.metrics.alertmanager_sends.labels(alertmanager, "success" if ok else "failure").inc()

    @property
    def ready(self) -> bool:
        return self.scheduler.running

    # -- configuration --------------------------------------------------------------------------------------------

    def reload(self, path: str | Path | None = None) -> list[str]:
        """Read the file again; swap the new config in whole, or keep the old one. Returns the errors (none: OK)."""
        path = path or self.config.source
        try:
            config = load_config(path, self.environ)
        except ConfigError as exc:
            self.metrics.reload_ok.set(0)
            log.error("config_reload_failed", file=str(path), errors=exc.messages)
            return exc.messages
        if config.region != self.metrics.region:  # label names are fixed for the process's life
            log.warning("region_unchanged", file=str(path), running=self.metrics.region, configured=config.region,
                        why="a new region takes effect at the next start")
        self._apply(config)
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(time.time())
        log.info("config_reloaded", file=str(path), targets=len(self.targets))
        return []

    def _apply(self, config: MonitorConfig) -> None:
        """Add, change and remove targets without disturbing the unchanged ones."""
        new = {t.name: t for t in config.targets if self.shard.owns(t.name)}
        for name in self.targets.keys() - new.keys():
            self.alerting.forget_target(name)
            self.scheduler.unschedule(name)
            self.metrics.remove_target(name)
            self.specs.pop(name, None)
            self.last_results.pop(name, None)
            self.history.forget(name)
        self.history.resize(config.server.history, config.storage.retention)
        self.scheduler.jitter = config.scheduler.jitter  # before scheduling: a target added now runs with it
        if config.storage.file() != self.config.storage.file():
            log.warning("storage_path_unchanged", running=self.history.path, configured=config.storage.file(),
                        why="a new history file takes effect at the next start")
        for name, target in new.items():
            old = self.targets.get(name)
            if old == target:
                continue
            self.specs[name] = target.to_spec()
            settings = (name, target.interval, target.expect.ttft_threshold, target.proxy_idle_timeout,
                        target.resume is not None)
            if old is None:
                self.metrics.add_target(*settings)
            else:
                self.metrics.configure_target(*settings)
            if old is None or old.interval != target.interval:
                self.scheduler.schedule(name, target.interval)
        if config.scheduler.max_concurrent != self.config.scheduler.max_concurrent:
            self._semaphore = asyncio.Semaphore(config.scheduler.max_concurrent)
        self.probe_endpoint.max_concurrent = config.server.max_concurrent_probes
        self.alerting.reconfigure(config.alertmanager)
        self.chains.apply(config.chain_checks)
        self.targets = new
        self.config = config
        self.metrics.targets.set(len(new))

    # -- probing --------------------------------------------------------------------------------------------------

    async def _run_target(self, name: str) -> None:
        spec = self.specs.get(name)
        if spec is None:  # removed by a reload while this run waited
            return
        due = time.perf_counter()
        task = asyncio.current_task()
        self._in_flight.add(task)
        try:
            semaphore = self._semaphore  # a reload may replace it: release the one acquired
            if semaphore.locked():  # every slot of scheduler.max_concurrent is taken: this run waits for one
                self.metrics.count(self.metrics.probe_waits, name)
                await semaphore.acquire()
                self.metrics.probe_wait.observe(time.perf_counter() - due)
            else:
                await semaphore.acquire()
                self.metrics.probe_wait.observe(0.0)
            try:
                self.metrics.in_flight.inc()
                started = time.perf_counter()
                try:
                    result = await run_probe(spec)
                finally:
                    self.metrics.in_flight.dec()
            finally:
                semaphore.release()
        except asyncio.CancelledError:
            return  # stopping: an interrupted probe is recorded as nothing, never as an invented result
        finally:
            self._in_flight.discard(task)
        if self._timing_disturbed(result, started, time.perf_counter()):
            self._discount_lag(name, result)
        self.record(name, result)

    def _timing_disturbed(self, result: ProbeResult, started: float, ended: float) -> bool:
        """On the kernel clock a late loop costs nothing: the probe itself flags the one case that does (its first
        token arrived while nothing could read, network.read_blind_at). On the user clock any loop lag past the
        bound does."""
        if result.clock == CLOCK_KERNEL:
            return WARNING_EVENT_LOOP_LAG in result.warnings
        return self.lag.lagged_between(started, ended)

    def _discount_lag(self, name: str, result: ProbeResult) -> None:
        """The loop was late while this probe ran: its timings measure us, not the endpoint."""
        if WARNING_EVENT_LOOP_LAG not in result.warnings:
            result.warnings.append(WARNING_EVENT_LOOP_LAG)
        if ALERT_TTFT_HIGH in result.alerts:
            result.alerts.remove(ALERT_TTFT_HIGH)
        self.metrics.count(self.metrics.lagged_probes, name)

    def record(self, name: str, result: ProbeResult) -> None:
        """One finished probe: metrics, the landing page, the log, and every listener (alerting)."""
        target = self.targets.get(name)
        if target is None:
            return
        run = self.history.record(name, dataclasses.replace(result, trace=None) if result.trace else result)
        self.metrics.observe(name, result, run=run.run)  # its exemplars name the run
        self.last_results[name] = result
        log.info(
            "probe_finished",
            target=name,
            run=run.run,
            outcome=result.outcome,
            reason=result.reason,
            started_at=result.started_at,
            clock=result.clock,
            ttft_seconds=result.ttft_seconds,
            first_text_seconds=result.first_text_seconds,
            duration_seconds=round(result.duration_seconds, 6),
            events=result.events,
            token_events=result.token_events,
            alerts=result.alerts,
            warnings=result.warnings,
            detail=result.detail or None,
            request_id=result.request_id,
            usage=result.usage,
            cost=result.cost,
            **({"resume": result.resume.outcome, "resume_detail": result.resume.detail} if result.resume else {}),
        )
        for listener in self.result_listeners:
            try:
                listener(target, result)
            except Exception:
                log.exception("result_listener_failed", target=name)

    def firing(self) -> dict[str, list[str]]:
        """Per target, the alerts the Alertmanager pusher holds as firing (after fire_after bad runs)."""
        out: dict[str, list[str]] = {}
        for state in self.alerting.firing():
            out.setdefault(state.target, []).append(state.alertname)
        return {target: sorted(names) for target, names in out.items()}

    def _on_skip(self, name: str) -> None:
        if name in self.targets:
            self.metrics.count(self.metrics.skipped, name)
            log.warning("probe_skipped", target=name, why="the previous run is still streaming")

    # -- running --------------------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, handle_signals: bool = False, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until request_stop() (or SIGTERM/SIGINT with handle_signals); SIGHUP always reloads (HTTP reload
        needs enable_lifecycle)."""
        host, port = split_listen(self.listen)
        app = create_app(self)
        ssl_context = None
        if self.web_config is not None:
            app = self.web_config.wrap(app)  # the whole app: every route, present and future, is behind it
            ssl_context = self.web_config.ssl_context()
        self.server = AppServer(app, host, port, ssl_context=ssl_context)
        self.history.start()  # before the first run: numbering continues from the file
        await self.server.start()
        loop = asyncio.get_running_loop()
        if handle_signals:
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.lag.start()
        await self.alerting.start()
        self.scheduler.start()
        self.chains.start()
        log.info("started", listen=self.base_url, targets=len(self.targets), shard=str(self.shard))
        if on_ready is not None:
            on_ready()
        try:
            await self._stop.wait()
        finally:
            await self._shutdown()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)

    async def _shutdown(self) -> None:
        started = time.monotonic()
        self.scheduler.shutdown()
        chains = asyncio.create_task(self.chains.stop(STOP_GRACE_SECONDS))
        tasks = list(self._in_flight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
        await chains
        await self.lag.stop()
        await self.alerting.stop()
        if self.server is not None:
            await self.server.stop()
        await asyncio.to_thread(self.history.stop)  # what finished is written before the process ends
        log.info("stopped", cancelled_probes=len(tasks), seconds=round(time.monotonic() - started, 3))
