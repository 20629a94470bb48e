"""The /metrics body: metrics.render writes exactly the bytes prometheus_client's generate_latest writes."""

from __future__ import annotations

import math
import time
from array import array

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from monitor import metrics as metrics_module
from monitor.metrics import Metrics, render, render_openmetrics, series
from monitor.result import ProbeResult


def finished(outcome: str = "completed", reason: str = "ok", ttft: float | None = 0.42, **kw) -> ProbeResult:
    times = array("d", [] if ttft is None else [ttft + 0.05 * i for i in range(20)])
    return ProbeResult(url="http://127.0.0.1:9/v1/chat/completions", dialect="openai-chat", outcome=outcome,
                       reason=reason, started_at=1_700_000_000.25, ttft_seconds=ttft, first_byte_seconds=0.01,
                       duration_seconds=1.5, token_times=times, max_silence_seconds=0.07, **kw)


def test_the_daemons_metrics_render_byte_for_byte_as_generate_latest_and_stay_so():
    metrics = Metrics()
    for i in range(5):
        metrics.add_target(f"t{i}", 60.0, 2.0, 90.0)
    assert render(metrics.registry) == generate_latest(metrics.registry)  # series at zero, no run yet
    metrics.observe("t0", finished())
    metrics.observe("t1", finished("ended_early", "connection_lost", ttft=None, alerts=["SSEProbeStreamEndedEarly"]))
    metrics.observe("t2", finished(ttft=1e-9, warnings=["buffering_suspected"]))
    metrics.observe("t2", finished(ttft=123456789.5))
    metrics.lag.observe(0.003)
    metrics.lagged_probes.labels("t3").inc()
    metrics.probe_waits.labels("t3").inc()
    metrics.probe_wait.observe(0.0)
    metrics.probe_wait.observe(1.75)
    metrics.observe("t3", finished(clock="kernel"))
    assert render(metrics.registry) == generate_latest(metrics.registry)
    metrics.observe("t0", finished(ttft=0.8))  # the cached text of a series must follow its values
    metrics.remove_target("t4")
    metrics.add_target("t5", 30.0, 1.0, 60.0)
    assert render(metrics.registry) == generate_latest(metrics.registry)
    assert render(metrics.registry) == generate_latest(metrics.registry)


def test_label_values_needing_escapes_and_odd_values_render_as_generate_latest():
    registry = CollectorRegistry()
    counter = Counter("c", "A counter\\ with a backslash\nand a newline.", ("target", "zone"), registry=registry)
    gauge = Gauge("g", "A gauge.", ("target",), registry=registry)
    histogram = Histogram("h", "A histogram.", ("target", "a_label", "zz"), buckets=(0.1, 1.0, 1e7), registry=registry)
    negative = Histogram("n", "Negative buckets: no _sum.", ("target",), buckets=(-1.0, 0.0, 1.0), registry=registry)
    Gauge("plain", "No labels.", registry=registry).set(3)
    Info("build", "Build.", registry=registry).info({"version": "1"})
    names = ['quote"d', "back\\slash", "new\nline", "ünïcode", ""]
    for name in names:
        counter.labels(name, "z").inc(2.5)
        histogram.labels(name, "a", "z").observe(0.5)
        negative.labels(name).observe(-3)
    gauge.labels("neg-zero").set(-0.0)
    gauge.labels("zero").set(0.0)
    gauge.labels("nan").set(math.nan)
    gauge.labels("inf").set(math.inf)
    gauge.labels("minus-inf").set(-math.inf)
    gauge.labels("int").set(7)
    gauge.labels("big").set(12345678901234.0)
    gauge.labels("tiny").set(1.5e-300)
    for _ in range(2):
        assert render(registry) == generate_latest(registry)
    counter.labels(names[0], "z").reset()  # a new _created: the cached line must not survive it
    counter.remove(names[1], "z")
    counter.labels(names[1], "z")  # removed and added again: a new series
    assert render(registry) == generate_latest(registry)


def test_a_gauge_with_a_function_and_created_series_switched_off_still_match(monkeypatch):
    registry = CollectorRegistry()
    gauge = Gauge("f", "Set by a function.", ("target",), registry=registry)
    gauge.labels("a").set_function(lambda: 4.0)
    Counter("c", "Counter.", ("target",), registry=registry).labels("a").inc()
    assert render(registry) == generate_latest(registry)
    monkeypatch.setattr(prometheus_metrics, "_use_created", False)
    assert render(registry) == generate_latest(registry)


def test_a_registry_with_target_info_or_nothing_registered_matches():
    registry = CollectorRegistry(target_info={"env": "test"})
    Gauge("g", "G.", ("target",), registry=registry).labels("a").set(1)
    assert render(registry) == generate_latest(registry)
    assert render(CollectorRegistry()) == generate_latest(CollectorRegistry()) == b""


def test_the_renderers_caches_hold_nothing_the_garbage_collector_must_walk():
    import gc

    metrics = Metrics()
    for i in range(300):  # ~11,000 series
        metrics.add_target(f"t{i}", 60.0, 2.0, 90.0)
        metrics.observe(f"t{i}", finished())
    gc.collect()
    before = len(gc.get_objects())
    first = render(metrics.registry)  # builds the per-series text caches
    gc.collect()
    assert len(gc.get_objects()) - before < 300  # a few objects per family, none per series
    assert render(metrics.registry) == first == generate_latest(metrics.registry)


# ---- a target's series, compact (monitor.metrics.series) ------------------------------------------------------------


def _scrapes(registry: CollectorRegistry) -> tuple[bytes, bytes]:
    return generate_latest(registry), openmetrics_latest(registry)


def _daemon_metrics(region: str | None = None) -> Metrics:
    """A daemon's metrics through a life: targets added, runs of every kind, a reload, a removal."""
    metrics = Metrics(region=region)
    metrics.add_target("a", 60.0, 2.0, 90.0, resume=True)
    metrics.add_target("b", 30.0, 1.5, 60.0)
    metrics.add_target("gone", 10.0, 2.0, 60.0)
    metrics.observe("a", finished(warnings=["buffering_suspected"], server_timing={"openai-processing-ms": 0.05},
                                  usage={"input_tokens": 12, "output_tokens": 20},
                                  cost={"amount": 2e-5, "currency": "USD"}), run=7)
    metrics.observe("b", finished("ended_early", "connection_lost", ttft=None, alerts=["SSEProbeStreamEndedEarly"]),
                    run=8)
    metrics.observe("b", finished(ttft=2.5, first_text_seconds=2.75, alerts=["SSEProbeTTFTHigh"]), run=9)
    metrics.observe("gone", finished(clock="user"))
    metrics.count(metrics.lagged_probes, "b")
    metrics.count(metrics.skipped, "a")
    metrics.configure_target("b", 15.0, 2.0, 60.0, resume=True)
    metrics.remove_target("gone")
    return metrics


@pytest.mark.parametrize("region", [None, "eu-west"])
def test_a_targets_compact_series_scrape_byte_for_byte_as_prometheus_clients_own(region, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1_700_000_123.5)  # created times and exemplar stamps alike
    with monkeypatch.context() as library:
        library.setattr(metrics_module, "series", lambda metric, *labelvalues: metric.labels(*labelvalues))
        reference = _daemon_metrics(region)
    compact = _daemon_metrics(region)
    assert _scrapes(compact.registry) == _scrapes(reference.registry)
    assert render(compact.registry) == generate_latest(reference.registry)
    assert render_openmetrics(compact.registry) == openmetrics_latest(reference.registry)
    for family in (compact.ttft, compact.runs, compact.warning, compact.threshold, compact.tokens):
        assert family._metrics and not any(hasattr(child, "__dict__") for child in family._metrics.values())


def test_compact_series_keep_the_librarys_values_checks_and_exemplars(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    registries = []
    for make in (lambda metric, *labelvalues: metric.labels(*labelvalues), series):
        registry = CollectorRegistry()
        counter = Counter("c", "C.", ("target",), registry=registry)
        gauge = Gauge("g", "G.", ("target", "name"), registry=registry)
        histogram = Histogram("h", "H.", ("target",), buckets=(0.5, 1.0, 2.0), registry=registry)
        make(counter, "a").inc(2.5)
        make(counter, "b")
        with pytest.raises(ValueError, match="non-negative"):
            make(counter, "a").inc(-1)
        for name, value in (("zero", -0.0), ("nan", math.nan), ("inf", math.inf), ("int", 7)):
            make(gauge, "a", name).set(value)
        make(gauge, "a", "int").inc(2)
        make(gauge, "a", "int").dec(0.5)
        for value in (0.0, 0.5, 0.75, 2.0, 2.5, 1e9):
            make(histogram, "a").observe(value, {"run": "3"} if value > 0.6 else None)
        with pytest.raises(ValueError, match="128"):
            make(histogram, "a").observe(1.0, {"run": "x" * 200})
        counter.remove("b")
        make(counter, "b").inc()
        registries.append(registry)
    library, compact = registries
    children = [child for metric in compact._collector_to_names for child in metric._metrics.values()]
    assert children and not any(hasattr(child, "__dict__") for child in children)  # compact ones, not the library's
    assert _scrapes(compact) == _scrapes(library)
    assert render(compact) == generate_latest(library)
    assert render_openmetrics(compact) == openmetrics_latest(library)
    monkeypatch.setattr(prometheus_metrics, "_use_created", False)
    assert _scrapes(compact) == _scrapes(library)
    assert render(compact) == generate_latest(library)
