"""The /metrics body: metrics.render writes exactly the bytes prometheus_client's generate_latest writes."""

from __future__ import annotations

import math
from array import array

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client import metrics as prometheus_metrics

from monitor.metrics import Metrics, render
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
