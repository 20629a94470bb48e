"""The resumption check (a target's `resume:`, `probe --resume-after`): the probe drops the stream after N token
events, reconnects with the last event id, and tells a correct resumption from each way a server gets it wrong —
against the real simulator over loopback, through the command line, the configuration, the daemon's metrics and its
push to an Alertmanager."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from conftest import probe_json, sse_monitor
from monitor.config import ConfigError, load_config
from monitor.dialects import Request
from monitor.probe import _compare_ids, resume_request, run_probe
from monitor.result import ProbeSpec, ResumeSpec
from servers import DaemonProcess, RecordingServer, parse_metrics, wait_until

TOKENS = 12
AFTER = 5
# fast streams that number their token events (`id: <n>`)
STREAM = f"ids=1&tokens={TOKENS}&rate=200&ttft=0.05"
PATHS = {"openai-chat": "/v1/chat/completions", "openai-responses": "/v1/responses", "anthropic": "/v1/messages",
         "gemini": "/v1beta/models/sim-1:streamGenerateContent", "generic": "/v1/stream"}


def probe(simulator: str, query: str, dialect: str = "openai-chat", **resume) -> ProbeSpec:
    spec = ProbeSpec(url=f"{simulator}{PATHS[dialect]}?{query}", dialect=dialect, timeout=20, idle_timeout=10,
                     resume=ResumeSpec(**{"after_events": AFTER, **resume}))
    if dialect == "generic":  # the simulator's generic stream ends with an event of type `done`
        spec = ProbeSpec(**{**spec.__dict__, "terminal_event": "done"})
    return asyncio.run(run_probe(spec))


# ---- one probe against the simulator -----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", list(PATHS))
def test_a_server_that_resumes_right_after_the_last_id_passes_in_every_dialect(simulator, dialect):
    r = probe(simulator, STREAM, dialect)
    resume = r.resume
    assert (resume.outcome, resume.last_id, resume.first_id, resume.first_id_after) == ("resumed", "5", "1", "6")
    assert "resumed right after id \"5\"" in resume.detail
    assert (resume.events_before, resume.events_after) == (AFTER, TOKENS - AFTER)
    assert resume.status_code == 200
    # the whole answer came, once: the first connection's tokens, then the rest; the stream ended properly
    assert (r.outcome, r.reason, r.token_events, r.alerts, r.warnings) == ("completed", "ok", TOKENS, [], [])
    # the timings are the first connection's; the reconnect has its own, later on the same axis
    assert 0 < r.ttft_seconds < resume.reconnect_seconds < resume.reconnect_seconds + resume.ttft_seconds <= r.duration_seconds
    assert resume.ttft_seconds >= 0.04  # the simulator's ttft=0.05 again: a resumed stream is a new request
    # our own drop is not a gap in the stream: the gaps are those within each connection, never the one across
    t = r.token_times
    assert len(t) == TOKENS
    assert r.token_gaps() == [t[i] - t[i - 1] for i in range(1, TOKENS) if i != AFTER]
    assert t[AFTER] - t[AFTER - 1] >= resume.ttft_seconds  # across: the reconnect and the resumed stream's TTFT


@pytest.mark.parametrize("fault, outcome, first_after, detail", [
    ("restart", "restarted", "1", 'the resumed stream started over: its first id "1" is the first connection\'s first id'),
    ("gap", "gap", "8", 'the resumed stream began with id "8" after the last id seen, "5": 2 events skipped'),
    ("duplicate", "duplicate", "5", 'the resumed stream began with id "5" again (the last id seen)'),
])
def test_a_resumed_stream_that_starts_over_skips_or_repeats_is_told_apart(simulator, fault, outcome, first_after, detail):
    r = probe(simulator, f"{STREAM}&resume_fault={fault}")
    assert (r.resume.outcome, r.resume.first_id_after) == (outcome, first_after)
    assert r.resume.detail.startswith(detail)
    # the resumed stream itself ended properly: only the resumption is broken, and that is a warning's alert
    assert (r.outcome, r.reason) == ("completed", "ok")
    assert r.alerts == ["SSEProbeResumeBroken"]
    assert r.token_events == AFTER + r.resume.events_after
    assert r.resume.events_after == TOKENS - int(first_after) + 1


def test_a_refused_reconnect_fails_the_run_but_only_opens_a_ticket(simulator):
    r = probe(simulator, f"{STREAM}&resume_fault=refuse")
    assert (r.resume.outcome, r.resume.status_code, r.resume.events_after) == ("refused", 409, 0)
    assert r.resume.detail == "the reconnect with Last-Event-ID: 5 got no stream (HTTP 409)"
    # a user whose connection dropped gets no rest of the answer: the probe failed, on the reconnect
    assert (r.outcome, r.reason, r.status_code) == ("failed", "http_status", 409)
    assert r.detail.startswith("after the reconnect (Last-Event-ID: 5): HTTP 409: ")
    assert r.alerts == ["SSEProbeResumeBroken"]  # no page: the stream worked until the probe cut it
    assert r.ttft_seconds is not None and r.token_events == AFTER
    assert r.warnings == []  # the 409's JSON error body is not a stream's content type problem


def test_a_stream_without_ids_is_not_dropped_and_says_there_is_nothing_to_resume(simulator):
    r = probe(simulator, f"{STREAM}&resume_fault=noids")
    assert r.resume.outcome == "no_ids"
    assert r.resume.detail.startswith("the first 5 token events carried no event id")
    assert r.resume.reconnect_seconds is None and r.resume.last_id is None  # no reconnect: nothing to send
    assert (r.outcome, r.token_events, r.alerts) == ("completed", TOKENS, ["SSEProbeResumeBroken"])


def test_the_id_goes_in_the_header_the_query_parameter_or_both_as_configured(simulator):
    # the simulator resumes after its `resume` query parameter, else after a Last-Event-ID header
    assert probe(simulator, STREAM).resume.outcome == "resumed"  # the header alone
    assert probe(simulator, STREAM, header=False, query_param="resume").resume.outcome == "resumed"
    assert probe(simulator, STREAM, header=True, query_param="from").resume.outcome == "resumed"  # header does it
    # a parameter the server does not know, and no header: the server starts over, and the probe says so
    r = probe(simulator, STREAM, header=False, query_param="from")
    assert (r.resume.outcome, r.resume.first_id_after) == ("restarted", "1")


def test_the_reconnect_repeats_the_request_with_the_id_added():
    request = Request("POST", "https://api.example.com/v1/chat?alt=sse&resume=old&x=1", {"Authorization": "Bearer k",
                      "last-event-id": "stale"}, b'{"stream":true}')
    again = resume_request(request, ResumeSpec(after_events=3, query_param="resume"), "chunk 17/a")
    assert again.url == "https://api.example.com/v1/chat?alt=sse&x=1&resume=chunk%2017%2Fa"
    assert again.headers == {"Authorization": "Bearer k", "Last-Event-ID": "chunk 17/a"}
    assert (again.method, again.content) == ("POST", b'{"stream":true}')
    only_param = resume_request(request, ResumeSpec(after_events=3, header=False, query_param="resume"), "9")
    assert only_param.headers == request.headers


def test_the_check_is_not_made_when_the_stream_ends_before_its_drop_point(simulator):
    r = probe(simulator, "ids=1&tokens=3&rate=200&ttft=0.05")
    assert r.resume.outcome is None and r.resume.events_before == 3
    assert r.resume.detail == ("not checked: the stream ended properly after 3 token events, before the 5 after which "
                               "the connection is dropped and resumed")
    assert (r.outcome, r.alerts, r.warnings) == ("completed", [], ["resume_not_checked"])
    # a stream cut before the drop point is its own alert; the check did not happen either
    cut = probe(simulator, "ids=1&tokens=10&rate=200&ttft=0.05&drop_after=2")
    assert cut.resume.outcome is None and cut.resume.detail.startswith("not checked: the stream ended (ended_early")
    assert cut.alerts == ["SSEProbeStreamEndedEarly"] and cut.warnings == []


def test_a_stream_cut_after_the_reconnect_is_an_early_end_of_a_resumed_stream(simulator):
    r = probe(simulator, "ids=1&tokens=20&rate=200&ttft=0.05&drop_after=8")
    assert (r.resume.outcome, r.resume.first_id_after, r.resume.events_after) == ("resumed", "6", 3)
    assert (r.outcome, r.reason, r.alerts) == ("ended_early", "connection_lost", ["SSEProbeStreamEndedEarly"])
    assert r.detail.startswith("after the reconnect (Last-Event-ID: 5): ")


@pytest.mark.parametrize("first, last, after, outcome, detail", [
    ("chunk-1", "chunk-5", "chunk-6", "resumed", 'resumed right after id "chunk-5": the next id was "chunk-6"'),
    ("chunk-1", "chunk-5", "chunk-9", "gap", 'the resumed stream began with id "chunk-9" after the last id seen, "chunk-5": 3 events skipped'),
    ("chunk-1", "chunk-5", "chunk-3", "duplicate", 'the resumed stream began with id "chunk-3" again (from before the last id seen, "chunk-5")'),
    ("a", "e", "f", "resumed", 'resumed after id "e" with id "f", not seen before; the ids are not numbered, so a gap cannot be checked'),
    ("a", "e", "a", "restarted", 'the resumed stream started over: its first id "a" is the first connection\'s first id'),
    ("a", "e", "c", "duplicate", 'the resumed stream began with id "c" again (from before the last id seen, "e")'),
    ("a", "e", "e", "duplicate", 'the resumed stream began with id "e" again (the last id seen)'),
])
def test_ids_are_compared_as_numbers_when_numbered_else_as_seen_or_not(first, last, after, outcome, detail):
    seen = {first, last, "b", "c", "d"} if first == "a" else {f"chunk-{i}" for i in range(1, 6)}
    got, text = _compare_ids(first, last, after, seen)
    assert got == outcome and text.startswith(detail)


# ---- the command line ----------------------------------------------------------------------------------------------


def test_probe_command_reports_the_check_and_exits_1_when_it_is_broken(simulator):
    url = f"{simulator}/v1/chat/completions?{STREAM}"
    status, out = probe_json(url + "&resume_fault=gap", "--resume-after", "5", "--resume-query-param", "resume")
    assert status == 1 and out["alerts"] == ["SSEProbeResumeBroken"]
    assert out["resume"]["outcome"] == "gap" and out["resume"]["first_id_after"] == "8"
    assert out["resume"]["last_id"] == "5" and out["resume"]["events_before"] == 5
    ok = sse_monitor("probe", url, "--resume-after", "5", "--resume-query-param", "resume", "--no-resume-header")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert '  resume       resumed: resumed right after id "5": the next id was "6"' in ok.stdout
    assert "  alerts       none" in ok.stdout
    status, plain = probe_json(url)  # no check asked for: none made, none reported
    assert status == 0 and plain["resume"] is None


@pytest.mark.parametrize("args, message", [
    (["--no-resume-header"], "--no-resume-header needs --resume-after N"),
    (["--resume-query-param", "resume"], "--resume-query-param needs --resume-after N"),
    (["--resume-after", "3", "--no-resume-header"], "--no-resume-header needs --resume-query-param NAME"),
    (["--resume-after", "3", "--resume-query-param", "a b"], "--resume-query-param: expected a query parameter name"),
    (["--resume-after", "0"], "expected a positive number, got '0'"),
])
def test_probe_command_refuses_a_check_that_cannot_send_the_id(args, message):
    proc = sse_monitor("probe", "http://127.0.0.1:1/", *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


# ---- the configuration ----------------------------------------------------------------------------------------------


def test_resume_in_defaults_modules_and_targets_reaches_the_spec(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("""
defaults:
  resume: {after_events: 3}
modules:
  resumable:
    resume: {after_events: 7, header: false, query_param: resume}
targets:
  - {name: inherits, url: "https://a.example.com/"}
  - {name: own, url: "https://a.example.com/", resume: {after_events: 5, query_param: from}}
  - {name: "off", url: "https://a.example.com/", resume: null}
  - {name: module, url: "https://a.example.com/", module: resumable}
""")
    specs = [t.to_spec().resume for t in load_config(path, {}).targets]
    assert specs == [ResumeSpec(3, True, None), ResumeSpec(5, True, "from"), None, ResumeSpec(7, False, "resume")]
    env = {"SSE_MONITOR_TARGETS__2__RESUME__AFTER_EVENTS": "9"}
    assert load_config(path, env).targets[2].to_spec().resume == ResumeSpec(9, True, None)


def test_resume_errors_name_the_file_the_field_and_what_was_expected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("""
targets:
  - name: a
    url: https://a.example.com/
    resume: {after_events: 0, header: maybe, query_param: "re sume", after_event: 3}
  - name: b
    url: https://a.example.com/
    resume: {header: false, query_param: resume}
  - name: c
    url: https://a.example.com/
    resume: {after_events: 2, header: false}
  - name: d
    url: https://a.example.com/
    resume: 5
""")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.messages == [
        f"{path}: targets[0].resume.after_events: expected an integer of at least 1, got 0",
        f"{path}: targets[0].resume.header: expected true or false, got 'maybe'",
        f"{path}: targets[0].resume.query_param: expected a query parameter name of 1 to 64 letters, digits and "
        "_ . ~ -, got 're sume'",
        f"{path}: targets[0].resume.after_event: unknown key, did you mean 'after_events'? expected one of: after_events, "
        "header, query_param",
        f"{path}: targets[1].resume.after_events: expected the number of token events after which the connection is "
        "dropped and resumed (this field is required)",
        f"{path}: targets[2].resume: expected header: true or a query_param to carry the last event id on the "
        "reconnect, got header: false and no query_param",
        f"{path}: targets[3].resume: expected a mapping, got 5",
    ]


# ---- the daemon: metrics and the pushed alert ---------------------------------------------------------------------


def daemon_config(simulator: str, am_url: str, gapping_query: str) -> str:
    url = f"{simulator}/v1/chat/completions"
    return f"""defaults: {{interval: 1s, timeout: 20s, idle_timeout: 10s}}
scheduler: {{jitter: 0s}}
alertmanager: {{urls: ["{am_url}"], resend_interval: 1s}}
modules:
  resumable:
    resume: {{after_events: 5}}
    allowed_targets: ["{simulator}/"]
targets:
  - name: resumes
    url: "{url}?{STREAM}"
    resume: {{after_events: 5, query_param: resume}}
  - name: gapping
    url: "{url}?{gapping_query}"
    resume: {{after_events: 5}}
  - name: plain
    url: "{url}?{STREAM}"
"""


def test_the_daemon_counts_checks_and_pushes_a_warning_that_resolves_when_fixed(simulator, tmp_path):
    am = RecordingServer()
    d = DaemonProcess(daemon_config(simulator, am.url, f"{STREAM}&resume_fault=gap"), tmp_path,
                      args=["--web.enable-lifecycle"])
    try:
        wait_until(lambda: d.sample("sse_probe_resume_total", target="gapping", outcome="gap") >= 2
                   and d.sample("sse_probe_resume_total", target="resumes", outcome="resumed") >= 2, 20,
                   "two checks of each target with a resumption check")
        m = d.metrics()
        assert d.sample("sse_probe_resume_ok", target="resumes") == 1
        assert d.sample("sse_probe_resume_ok", target="gapping") == 0
        assert d.sample("sse_probe_resume_total", target="resumes", outcome="refused") == 0  # every outcome from zero
        assert d.sample("sse_probe_alert_condition", target="gapping", alertname="SSEProbeResumeBroken") == 1
        assert d.sample("sse_probe_alert_condition", target="resumes", alertname="SSEProbeResumeBroken") == 0
        assert d.sample("sse_probe_success", target="gapping") == 1  # a ticket, not a page: the stream is fine
        # a target without a check has no resume series at all
        assert not [key for key in m if key[0].startswith("sse_probe_resume") and ("target", "plain") in key[1]]

        _, alert = wait_until(lambda: am.first("SSEProbeResumeBroken", None, target="gapping"), 10, "the pushed alert")
        assert alert["labels"] == {"alertname": "SSEProbeResumeBroken", "target": "gapping", "severity": "warning"}
        assert alert["annotations"]["summary"] == (
            "The stream from gapping does not resume after a dropped connection (gap).")
        assert alert["annotations"]["description"].startswith(
            'resumption check: gap; the resumed stream began with id "8" after the last id seen, "5": 2 events skipped')
        assert alert["annotations"]["runbook_url"].endswith("/SSEProbeResumeBroken.md")
        assert not am.alerts(target="resumes") and not am.alerts(target="plain")
        assert not [a for _, a in am.alerts(target="gapping") if a["labels"]["alertname"] != "SSEProbeResumeBroken"]
        events = [e for e in d.log_events() if e.get("event") == "probe_finished" and e.get("target") == "gapping"]
        assert events and events[-1]["resume"] == "gap" and "2 events skipped" in events[-1]["resume_detail"]

        # the server is fixed: the alert resolves (endsAt in the past)
        d.config_path.write_text(daemon_config(simulator, am.url, STREAM))
        assert d.reload_via_http().status_code == 200
        wait_until(lambda: d.sample("sse_probe_resume_ok", target="gapping") == 1, 15, "a good check")

        def resolved():
            from datetime import datetime, timezone

            last = am.alerts("SSEProbeResumeBroken", target="gapping")[-1][1]
            return datetime.fromisoformat(last["endsAt"].replace("Z", "+00:00")) <= datetime.now(timezone.utc)

        wait_until(resolved, 10, "the resolution")
        # the check switched off by a reload: its series go
        d.config_path.write_text(daemon_config(simulator, am.url, STREAM).replace(
            "    resume: {after_events: 5}\n", ""))
        assert d.reload_via_http().status_code == 200
        wait_until(lambda: d.sample("sse_probe_resume_ok", target="gapping") is None, 10, "the series dropped")
        assert d.sample("sse_probe_resume_total", target="gapping", outcome="resumed") is None
    finally:
        d.stop()
        am.close()


def test_a_run_that_does_not_get_to_its_check_leaves_the_gauge_nan(simulator, tmp_path):
    am = RecordingServer()
    text = daemon_config(simulator, am.url, "ids=1&tokens=3&rate=200&ttft=0.05")
    d = DaemonProcess(text, tmp_path)
    try:
        wait_until(lambda: d.runs("gapping") >= 2, 20, "two runs")
        assert math.isnan(d.sample("sse_probe_resume_ok", target="gapping"))
        assert sum(v for (name, labels), v in d.metrics().items()
                   if name == "sse_probe_resume_total" and ("target", "gapping") in labels) == 0
        assert d.sample("sse_probe_warning", target="gapping", warning="resume_not_checked") == 1
        assert d.sample("sse_probe_warning", target="resumes", warning="resume_not_checked") == 0
        assert not am.alerts("SSEProbeResumeBroken")
    finally:
        d.stop()
        am.close()


def test_the_json_api_the_target_page_and_probe_endpoint_carry_the_check(simulator, tmp_path):
    am = RecordingServer()
    d = DaemonProcess(daemon_config(simulator, am.url, f"{STREAM}&resume_fault=duplicate"), tmp_path)
    try:
        wait_until(lambda: d.runs("gapping") >= 1 and d.runs("plain") >= 1, 20, "a run of each")
        body = json.loads(d.get("/api/v1/targets").text)
        assert body["gapping"]["resume"]["outcome"] == "duplicate"
        assert body["gapping"]["resume"]["first_id_after"] == "5"
        assert body["plain"]["resume"] is None
        page = d.get("/targets/gapping").text
        assert "resume       duplicate" in page
        # /probe with a module that has a check: blackbox-style metrics say how it went; a ticket is no failure
        url = f"{simulator}/v1/chat/completions?{STREAM}"
        for fault, ok in (("none", 1.0), ("restart", 0.0)):
            text = d.get("/probe", params={"module": "resumable", "target": f"{url}&resume_fault={fault}"},
                         timeout=30).text
            m = parse_metrics(text)
            assert m[("probe_sse_resume_ok", frozenset())] == ok, text
            assert m[("probe_sse_alert_condition", frozenset({("alertname", "SSEProbeResumeBroken")}))] == 1 - ok
            assert m[("probe_success", frozenset())] == 1
        plain = parse_metrics(d.get("/probe", params={"module": "resumable", "target": f"{url}&tokens=3"}).text)
        assert ("probe_sse_resume_ok", frozenset()) not in plain  # the check did not happen: no sample
    finally:
        d.stop()
        am.close()
