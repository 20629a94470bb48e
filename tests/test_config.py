"""monitor.config: loading, defaults, environment overrides, ${VAR} expansion, to_spec, and every error message."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from monitor import config as config_module
from monitor.config import (
    DIALECTS,
    ConfigError,
    MonitorConfig,
    TargetConfig,
    check_config,
    expand_env,
    load_config,
    parse_duration,
    parse_size,
)
from monitor.result import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_STREAM_BYTES,
    DEFAULT_PROMPT,
    ProbeSpec,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).resolve().parent / "configs"
INVALID = CONFIGS / "invalid"
VALID = CONFIGS / "valid"
EXAMPLE = ROOT / "config" / "example.yaml"
EXAMPLE_ENV = {"OPENAI_API_KEY": "sk-openai", "ANTHROPIC_API_KEY": "sk-ant", "GEMINI_API_KEY": "gm-key"}


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path | str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ if environ is not None else {})
    return info.value.messages


MINIMAL = """
targets:
  - name: api
    url: https://api.example.com/v1/chat/completions
"""


# ---- the example and valid files ------------------------------------------------------------------------------------


def test_example_loads_with_its_variables_set():
    cfg = load_config(EXAMPLE, EXAMPLE_ENV)
    assert isinstance(cfg, MonitorConfig)
    assert cfg.source == EXAMPLE
    names = [t.name for t in cfg.targets]
    assert names == [
        "openai-via-module", "openai-slow", "openai-responses", "claude", "gemini-flash", "internal-gateway", "events-feed", "raw-body"
    ]
    assert {t.dialect for t in cfg.targets} == set(DIALECTS)
    via = cfg.target("openai-via-module")  # the module's settings, then defaults
    assert (via.model, via.timeout, via.interval, via.expect.ttft_threshold) == ("gpt-4o-mini", 120.0, 60.0, 2.0)
    assert via.headers == {"User-Agent": "sse-monitor/0.1", "Authorization": "Bearer sk-openai"}
    module = cfg.modules["openai-chat"]
    assert module.allows("https://api.openai.com/v1/chat/completions")
    assert module.allows("https://llm-eu-1.internal.example.com/v1/chat/completions")
    assert not module.allows("https://api.openai.com.evil.example/v1/chat/completions")
    assert not module.allows("https://api.openai.com@evil.example/v1/")
    assert not module.allows("http://api.openai.com/v1/chat/completions")  # another scheme
    assert not module.allows("https://api.openai.com/v10/x")  # the path must be under the prefix's
    openai = cfg.target("openai-slow")
    assert openai.headers["Authorization"] == "Bearer sk-openai"
    assert openai.headers["User-Agent"] == "sse-monitor/0.1"  # from defaults
    assert openai.labels == {"team": "platform", "severity_hint": "page", "provider": "openai"}
    assert cfg.target("claude").headers["x-api-key"] == "sk-ant"
    assert cfg.target("gemini-flash").url.endswith("&key=gm-key")
    assert cfg.target("internal-gateway").url == "http://llm-gateway.internal:8080/v1/chat/completions"
    assert cfg.target("events-feed").max_event_bytes == 64 * 1024
    assert (cfg.target("events-feed").max_stream_bytes, cfg.target("events-feed").max_events) == (16 * 1024**2, 50_000)
    assert (openai.max_stream_bytes, openai.max_events) == (64 * 1024**2, 200_000)  # from defaults
    assert cfg.alertmanager.urls == ["http://alertmanager:9093"]
    assert cfg.server.listen == "0.0.0.0:9108"


def test_example_sets_every_option():
    """The example documents every key of every section (so a new option needs an example line)."""
    import yaml

    raw = yaml.safe_load(EXAMPLE.read_text())
    for section in ("defaults", "scheduler", "server", "alertmanager"):
        model = MonitorConfig.model_fields[section].annotation
        assert set(raw[section]) == set(model.model_fields), section
    assert "allowed_targets" in set().union(*(m.keys() for m in raw["modules"].values()))
    used = set().union(*(t.keys() for t in raw["targets"]))
    assert used == set(TargetConfig.model_fields)
    expect = set().union(*(t.get("expect", {}).keys() for t in raw["targets"]))
    assert expect == {"ttft_threshold", "min_duration", "min_events"}


def test_example_needs_its_api_keys():
    messages = errors_of(EXAMPLE, {})
    assert any("OPENAI_API_KEY" in m for m in messages)
    assert any("ANTHROPIC_API_KEY" in m for m in messages)
    assert any("GEMINI_API_KEY" in m for m in messages)


def test_minimal_target_gets_every_default():
    cfg = load_config(VALID / "minimal.yaml", {})
    (target,) = cfg.targets
    assert target.interval == 60.0
    assert target.timeout == 300.0
    assert target.idle_timeout == 90.0
    assert target.dialect == "openai-chat"
    assert target.prompt == DEFAULT_PROMPT
    assert target.max_event_bytes == DEFAULT_MAX_EVENT_BYTES
    assert target.max_stream_bytes == DEFAULT_MAX_STREAM_BYTES == 64 * 1024 * 1024
    assert target.max_events == DEFAULT_MAX_EVENTS == 200_000
    assert target.verify_tls is True
    assert target.headers == {} and target.labels == {} and target.body is None
    assert target.expect.ttft_threshold == 2.0
    assert target.expect.min_duration is None and target.expect.min_events is None
    # a bare target probes exactly like a bare ProbeSpec
    assert target.to_spec() == ProbeSpec(url="https://api.example.com/v1/chat/completions")
    assert cfg.scheduler.max_concurrent == 400 and cfg.scheduler.jitter == 5.0
    assert cfg.server.listen == "0.0.0.0:9108" and cfg.server.external_url is None
    am = cfg.alertmanager
    assert (am.urls, am.resend_interval, am.timeout, am.fire_after, am.resolve_after) == ([], 60.0, 10.0, 1, 1)
    assert am.labels == {} and am.runbook_base_url is None


def test_defaults_are_inherited_and_overridden():
    cfg = load_config(VALID / "inheritance.yaml", {})
    every, own, some = cfg.targets

    assert every.interval == 30.0 and every.timeout == 600.0 and every.idle_timeout == 120.0
    assert every.dialect == "anthropic" and every.prompt == "Count to 100." and every.verify_tls is False
    assert every.max_event_bytes == 64 * 1024
    assert every.headers == {"User-Agent": "sse-monitor-test", "Authorization": "Bearer default-token"}
    assert every.labels == {"team": "platform", "tier": "gold"}
    assert (every.expect.ttft_threshold, every.expect.min_duration, every.expect.min_events) == (1.5, 20.0, 50)

    assert own.interval == 90.0 and own.timeout == 300.0 and own.idle_timeout == 60.0
    assert own.dialect == "openai-chat" and own.prompt == "Say hi." and own.verify_tls is True
    assert own.max_event_bytes == 2048
    # header names are case-insensitive: the target's `authorization` replaces the default `Authorization`
    assert own.headers == {"User-Agent": "sse-monitor-test", "authorization": "Bearer own-token"}
    assert own.labels == {"team": "platform", "tier": "silver"}
    # min_duration: null switches the inherited minimum off
    assert (own.expect.ttft_threshold, own.expect.min_duration, own.expect.min_events) == (3.0, None, 5)

    assert some.idle_timeout == 300.0 and some.timeout == 600.0
    assert (some.expect.ttft_threshold, some.expect.min_duration, some.expect.min_events) == (1.5, 20.0, 10)


def test_zero_targets_is_valid(tmp_path):
    assert load_config(write(tmp_path, "targets: []\n"), {}).targets == []
    assert load_config(write(tmp_path, "{}\n"), {}).targets == []
    assert load_config(write(tmp_path, "scheduler: {max_concurrent: 3}\n"), {}).targets == []


def test_yaml_1_2_scalars(tmp_path):
    """No 'Norway problem': yes/no/on/off and 1:30 stay strings, only true/false are booleans."""
    path = write(tmp_path, """
targets:
  - name: no
    url: https://a.example.com/
    model: on
    verify_tls: false
  - name: "1:30"
    url: https://b.example.com/
    prompt: 2024-01-01
""")
    cfg = load_config(path, {})
    assert [t.name for t in cfg.targets] == ["no", "1:30"]
    assert cfg.targets[0].model == "on" and cfg.targets[0].verify_tls is False
    assert cfg.targets[1].prompt == "2024-01-01"


def test_listen_addresses(tmp_path):
    for listen, host, port in [
        ("0.0.0.0:9108", "0.0.0.0", 9108),
        ("[::]:9108", "::", 9108),
        ("[::1]:80", "::1", 80),
        ("localhost:9000", "localhost", 9000),
        ("monitor.example.com:9108", "monitor.example.com", 9108),
    ]:
        cfg = load_config(write(tmp_path, f"server: {{listen: '{listen}'}}\n"), {})
        assert (cfg.server.listen, cfg.server.host, cfg.server.port) == (listen, host, port)


def test_durations_everywhere_are_seconds(tmp_path):
    cfg = load_config(write(tmp_path, """
defaults: {interval: 1m30s, timeout: 1h, idle_timeout: 250ms, ttft_threshold: 2.5}
scheduler: {jitter: 0}
alertmanager: {resend_interval: 1d, timeout: "15"}
"""), {})
    assert (cfg.defaults.interval, cfg.defaults.timeout, cfg.defaults.idle_timeout) == (90.0, 3600.0, 0.25)
    assert cfg.defaults.ttft_threshold == 2.5
    assert cfg.scheduler.jitter == 0.0
    assert (cfg.alertmanager.resend_interval, cfg.alertmanager.timeout) == (86400.0, 15.0)


def test_method_is_normalised_and_yaml_anchors_work(tmp_path):
    cfg = load_config(write(tmp_path, """
targets:
  - &first {name: a, url: "https://a.example.com/", method: post}
  - {<<: *first, name: b}
"""), {})
    assert [(t.name, t.method, t.url) for t in cfg.targets] == [
        ("a", "POST", "https://a.example.com/"),
        ("b", "POST", "https://a.example.com/"),
    ]


# ---- environment overrides ------------------------------------------------------------------------------------------


def test_env_overrides_with_prefix_and_nesting():
    env = {
        "SSE_MONITOR_DEFAULTS__INTERVAL": "30s",
        "SSE_MONITOR_SCHEDULER__MAX_CONCURRENT": "10",
        "sse_monitor_server__listen": "127.0.0.1:9999",  # names are case-insensitive
        "SSE_MONITOR_ALERTMANAGER__URLS": '["http://am1:9093", "http://am2:9093"]',  # lists as JSON
        "SSE_MONITOR_ALERTMANAGER__FIRE_AFTER": "3",
        "SSE_MONITOR_DEFAULTS__VERIFY_TLS": "false",
        "SSE_MONITOR_LOG_LEVEL": "debug",  # not a section: left for the command line, not an error
        "OTHER": "x",
    }
    cfg = load_config(VALID / "minimal.yaml", env)
    assert cfg.defaults.interval == 30.0
    assert cfg.targets[0].interval == 30.0  # inherited after the override
    assert cfg.targets[0].verify_tls is False
    assert cfg.scheduler.max_concurrent == 10
    assert cfg.server.listen == "127.0.0.1:9999"
    assert cfg.alertmanager.urls == ["http://am1:9093", "http://am2:9093"]
    assert cfg.alertmanager.fire_after == 3


def test_env_overrides_beat_the_file():
    cfg = load_config(VALID / "inheritance.yaml", {"SSE_MONITOR_DEFAULTS__INTERVAL": "5m"})
    assert [t.interval for t in cfg.targets] == [300.0, 90.0, 300.0]


def test_env_overrides_targets_by_index_and_null():
    env = {
        "SSE_MONITOR_TARGETS__0__URL": "https://staging.example.com/v1/messages",
        "SSE_MONITOR_TARGETS__1__EXPECT__MIN_EVENTS": "7",
        "SSE_MONITOR_TARGETS__2__LABELS": '{"tier": "bronze"}',
        "SSE_MONITOR_DEFAULTS__MIN_DURATION": "null",
    }
    cfg = load_config(VALID / "inheritance.yaml", env)
    assert cfg.targets[0].url == "https://staging.example.com/v1/messages"
    assert cfg.targets[0].name == "inherits-everything"  # the rest of the target is kept
    assert cfg.targets[1].expect.min_events == 7
    assert cfg.targets[2].labels == {"team": "platform", "tier": "bronze"}
    assert cfg.targets[0].expect.min_duration is None


def test_env_can_replace_the_target_list():
    env = {"SSE_MONITOR_TARGETS": '[{"name": "only", "url": "https://only.example.com/"}]'}
    cfg = load_config(VALID / "inheritance.yaml", env)
    assert [t.name for t in cfg.targets] == ["only"]


def test_environ_argument_replaces_os_environ(monkeypatch):
    monkeypatch.setenv("SSE_MONITOR_SCHEDULER__MAX_CONCURRENT", "7")
    assert load_config(VALID / "minimal.yaml", {}).scheduler.max_concurrent == 400
    assert load_config(VALID / "minimal.yaml").scheduler.max_concurrent == 7  # default: os.environ


def test_os_environ_is_used_for_expansion_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("SSE_TEST_TOKEN", "tok-123")
    path = write(tmp_path, MINIMAL + "    headers: {Authorization: 'Bearer ${SSE_TEST_TOKEN}'}\n")
    assert load_config(path).targets[0].headers["Authorization"] == "Bearer tok-123"


def test_env_errors_name_the_variable_only_for_what_it_set(tmp_path):
    path = write(tmp_path, """
defaults:
  headers: {"Bad Name": x}
""")
    env = {
        "SSE_MONITOR_DEFAULTS__HEADERS": '{"X-Ok": "1", "Also Bad": "2"}',  # merged into the file's headers
        "SSE_MONITOR_DEFAULTS__LABELS": '{"tier": ""}',
    }
    expected_name = "expected a header name made of letters, digits and !#$%&'*+-.^_`|~"
    assert errors_of(path, env) == [
        f"{path}: defaults.headers['Bad Name']: {expected_name}, got 'Bad Name'",
        f"{path}: defaults.headers['Also Bad']: {expected_name}, got 'Also Bad' "
        "(from environment variable SSE_MONITOR_DEFAULTS__HEADERS)",
        f"{path}: defaults.labels.tier: expected a non-empty string label value, got an empty string "
        "(from environment variable SSE_MONITOR_DEFAULTS__LABELS)",
    ]


def test_monitor_settings_is_the_pydantic_settings_view(monkeypatch):
    from monitor.config import MonitorSettings

    monkeypatch.setenv("SSE_MONITOR_SCHEDULER__MAX_CONCURRENT", "9")
    monkeypatch.setenv("SSE_MONITOR_DEFAULTS__INTERVAL", "2m")
    settings = MonitorSettings()
    assert settings.scheduler.max_concurrent == 9
    assert settings.defaults.interval == 120.0


# ---- ${VAR} expansion -----------------------------------------------------------------------------------------------


def test_expansion_in_headers_urls_and_alertmanager(tmp_path):
    path = write(tmp_path, """
defaults:
  headers: {X-Team: "${TEAM:-platform}"}
targets:
  - name: api
    url: "${API_BASE}/v1/chat/completions"
    headers:
      Authorization: "Bearer ${OPENAI_API_KEY}"
      X-Both: "${A}-${B:-b}"
      X-Empty-Default: "${EMPTY:-used}"
      X-Literal: "$${NOT_A_VAR} and $HOME"
    body: {note: "${NOT_EXPANDED}"}
server:
  external_url: "${PUBLIC_URL:-https://monitor.example.com}"
alertmanager:
  urls: ["${AM_URL}", "http://${AM_HOST:-am2}:9093"]
  runbook_base_url: "https://${RUNBOOK_HOST}/runbooks"
""")
    env = {
        "API_BASE": "https://api.example.com",
        "OPENAI_API_KEY": "sk-1",
        "A": "a",
        "EMPTY": "",
        "AM_URL": "http://am1:9093",
        "RUNBOOK_HOST": "wiki.example.com",
    }
    cfg = load_config(path, env)
    target = cfg.targets[0]
    assert target.url == "https://api.example.com/v1/chat/completions"
    assert target.headers == {
        "X-Team": "platform",
        "Authorization": "Bearer sk-1",
        "X-Both": "a-b",
        "X-Empty-Default": "used",
        "X-Literal": "${NOT_A_VAR} and $HOME",
    }
    assert target.body == {"note": "${NOT_EXPANDED}"}  # only URLs and header values are expanded
    assert cfg.server.external_url == "https://monitor.example.com"
    assert cfg.alertmanager.urls == ["http://am1:9093", "http://am2:9093"]
    assert cfg.alertmanager.runbook_base_url == "https://wiki.example.com/runbooks"


def test_expand_env_function():
    env = {"A": "1", "EMPTY": ""}
    assert expand_env("${A}", env) == "1"
    assert expand_env("${UNSET:-x y}", env) == "x y"
    assert expand_env("${EMPTY:-d}", env) == "d"
    assert expand_env("${EMPTY}", env) == ""
    assert expand_env("$${A}", env) == "${A}"
    assert expand_env("cost: $5", env) == "cost: $5"
    with pytest.raises(ValueError, match="^expected environment variable UNSET to be set"):
        expand_env("${UNSET}", env)
    with pytest.raises(ValueError, match="^expected environment variables X, Y to be set"):
        expand_env("${X}${Y}${X}", env)
    with pytest.raises(ValueError, match="closing"):
        expand_env("${A", env)


# ---- to_spec --------------------------------------------------------------------------------------------------------


def test_to_spec_carries_every_setting(tmp_path):
    path = write(tmp_path, """
defaults:
  headers: {User-Agent: ua, X-Key: "${KEY}"}
targets:
  - name: feed
    url: https://events.example.com/stream
    dialect: generic
    method: get
    interval: 10s
    timeout: 2m
    idle_timeout: 30s
    prompt: hello
    model: m1
    headers: {Accept: text/event-stream}
    body: {messages: [{role: user, content: "héllo"}], stream: true, n: 1.5, stop: null}
    expect: {ttft_threshold: 500ms, min_duration: 20s, min_events: 100}
    verify_tls: false
    heartbeat_events: [ping, keepalive]
    terminal_event: done
    terminal_data: "[DONE]"
    error_event: error
    max_event_bytes: 4KiB
    max_stream_bytes: 2MiB
    max_events: 5000
""")
    target = load_config(path, {"KEY": "secret"}).targets[0]
    spec = target.to_spec()
    assert spec == ProbeSpec(
        url="https://events.example.com/stream",
        dialect="generic",
        prompt="hello",
        model="m1",
        headers={"User-Agent": "ua", "X-Key": "secret", "Accept": "text/event-stream"},
        body=json.dumps(
            {"messages": [{"role": "user", "content": "héllo"}], "stream": True, "n": 1.5, "stop": None},
            ensure_ascii=False, separators=(",", ":"),
        ).encode(),
        method="GET",
        ttft_threshold=0.5,
        min_duration=20.0,
        min_events=100,
        timeout=120.0,
        idle_timeout=30.0,
        max_event_bytes=4096,
        max_stream_bytes=2 * 1024 * 1024,
        max_events=5000,
        heartbeat_events=("ping", "keepalive"),
        terminal_event="done",
        terminal_data="[DONE]",
        error_event="error",
        verify_tls=False,
        trace=False,
    )
    assert json.loads(spec.body) == target.body
    assert target.to_spec(trace=True) == dataclasses.replace(spec, trace=True)
    # the spec's headers are a copy
    spec.headers["X"] = "y"
    assert "X" not in target.headers


def test_stream_budgets_are_inherited_overridden_and_reach_the_spec(tmp_path):
    path = write(tmp_path, """
defaults:
  max_stream_bytes: 10MB
  max_events: 40000
targets:
  - name: inherits
    url: https://a.example.com/
  - name: own
    url: https://b.example.com/
    max_stream_bytes: 128MiB
    max_events: "1000000"
  - name: from-env
    url: https://c.example.com/
""")
    env = {"SSE_MONITOR_TARGETS__2__MAX_STREAM_BYTES": "2MiB", "SSE_MONITOR_TARGETS__2__MAX_EVENTS": "300"}
    inherits, own, from_env = load_config(path, env).targets
    assert (inherits.max_stream_bytes, inherits.max_events) == (10_000_000, 40_000)
    assert (own.max_stream_bytes, own.max_events) == (128 * 1024**2, 1_000_000)
    assert (from_env.max_stream_bytes, from_env.max_events) == (2 * 1024**2, 300)
    specs = [t.to_spec() for t in (inherits, own, from_env)]
    assert [(s.max_stream_bytes, s.max_events) for s in specs] == [
        (10_000_000, 40_000), (128 * 1024**2, 1_000_000), (2 * 1024**2, 300)
    ]
    # the edges of the rules: a budget equal to the event size limit, a minimum equal to the event budget
    edge = write(tmp_path, MINIMAL + "    max_stream_bytes: 1MiB\n    max_events: 5\n    expect: {min_events: 5}\n")
    spec = load_config(edge, {}).targets[0].to_spec()
    assert (spec.max_stream_bytes, spec.max_event_bytes, spec.max_events, spec.min_events) == (1024**2, 1024**2, 5, 5)


def test_stream_budget_messages(tmp_path):
    path = write(tmp_path, """
defaults:
  max_stream_bytes: 0
  max_events: -1
targets:
  - name: api
    url: https://api.example.com/v1/chat/completions
    max_stream_bytes: 512KiB
    max_events: 10
    expect: {min_events: 20}
""")
    env = {"SSE_MONITOR_DEFAULTS__MAX_EVENTS": "many"}
    assert errors_of(path, env) == [
        f"{path}: defaults.max_stream_bytes: expected a size in bytes such as 1048576, 64KiB or 1MiB, got 0",
        f"{path}: defaults.max_events: expected an integer of at least 1, got 'many' "
        "(from environment variable SSE_MONITOR_DEFAULTS__MAX_EVENTS)",
        f"{path}: targets[0].max_stream_bytes: expected at least the event size limit (1MiB, the built-in default), "
        "got 512KiB",
        f"{path}: targets[0].expect.min_events: expected at most the event budget (10, from targets[0].max_events), "
        "got 20",
    ]


def test_to_spec_string_body_is_sent_as_is(tmp_path):
    path = write(tmp_path, MINIMAL + "    body: 'prompt=héllo&x={\"a\": 1}'\n")
    assert load_config(path, {}).targets[0].to_spec().body == 'prompt=héllo&x={"a": 1}'.encode()


def test_repr_hides_header_values(tmp_path):
    path = write(tmp_path, MINIMAL + "    headers: {Authorization: 'Bearer ${KEY}'}\n")
    cfg = load_config(path, {"KEY": "sk-very-secret"})
    assert "sk-very-secret" not in repr(cfg)
    assert "sk-very-secret" not in repr(cfg.targets[0])


# ---- parsers --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25), ("1d", 86400.0), ("1m30s", 90.0),
        ("1h30m", 5400.0), ("1h 30m 15s", 5415.0), ("1.5s", 1.5), ("2m500ms", 120.5), ("0s", 0.0),
        (30, 30.0), (2.5, 2.5), ("90", 90.0), ("0.5", 0.5), (" 10s ", 10.0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["soon", "", "5", "-5s", "5 minutes", "30s1m", "1m1m", "1ms5s", "5S", "1.s", "s", "inf", -1,
              float("inf"), float("nan"), True, None, [30], {"s": 1}],
)
def test_parse_duration_rejects(value):
    if value == "5":  # a bare number string is seconds: not an error
        assert parse_duration(value) == 5.0
        return
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value).startswith("expected a duration such as 30s, 5m, 1h or a number of seconds, got ")


def test_parse_duration_message():
    with pytest.raises(ValueError) as info:
        parse_duration("soon")
    assert str(info.value) == "expected a duration such as 30s, 5m, 1h or a number of seconds, got 'soon'"


@pytest.mark.parametrize(
    "value, size", [(1, 1), (1048576, 1048576), ("64KiB", 65536), ("1MiB", 1048576), ("1MB", 1000000),
                    ("2 kib", 2048), ("512", 512), ("100B", 100)],
)
def test_parse_size(value, size):
    assert parse_size(value) == size


@pytest.mark.parametrize("value", [0, -1, "1.5MiB", "lots", "1TiB", True, 1.0, None])
def test_parse_size_rejects(value):
    with pytest.raises(ValueError, match="^expected a size in bytes"):
        parse_size(value)


# ---- invalid configurations: one file per rule, each with its exact messages ----------------------------------------

INVALID_FILES = sorted(p.name for p in INVALID.glob("*.yaml"))


def test_every_invalid_file_has_its_expected_messages():
    stems = {p.stem for p in INVALID.glob("*.yaml")}
    assert stems == {p.stem for p in INVALID.glob("*.expected")}
    assert {p.stem for p in INVALID.glob("*.env")} <= stems
    assert len(stems) >= 40


def _env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line.strip())


@pytest.mark.parametrize("name", INVALID_FILES)
def test_invalid_config(name, monkeypatch):
    """Loading tests/configs/invalid/NAME.yaml (with NAME.env as the environment, if present) fails with exactly
    the messages in NAME.expected, one per line, in order."""
    monkeypatch.chdir(INVALID)  # so each message starts with the bare file name
    stem = name[: -len(".yaml")]
    expected = (INVALID / f"{stem}.expected").read_text(encoding="utf-8").splitlines()
    assert errors_of(name, _env_file(INVALID / f"{stem}.env")) == expected


def test_spec_example_message_exactly(monkeypatch):
    monkeypatch.chdir(INVALID)
    assert errors_of("bad_duration.yaml") == [
        "bad_duration.yaml: targets[1].interval: expected a duration such as 30s, 5m, 1h or a number of seconds, "
        "got 'soon'"
    ]
    assert errors_of("duplicate_name.yaml") == [
        "duplicate_name.yaml: targets[3].name: expected a unique name, 'x' is already used by targets[0]"
    ]


def test_every_error_names_the_file(tmp_path):
    for name in INVALID_FILES:
        env = _env_file(INVALID / name.replace(".yaml", ".env"))
        for message in errors_of(INVALID / name, env):
            assert message.startswith(f"{INVALID / name}: ")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert errors_of(path) == [f"{path}: expected a readable configuration file, but it does not exist"]


def test_directory_instead_of_file(tmp_path):
    assert errors_of(tmp_path) == [f"{tmp_path}: expected a configuration file, got a directory"]


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("targets: []\n# caf\xe9\n".encode("latin-1"))
    assert errors_of(path) == [f"{path}: expected UTF-8 text, got an invalid byte at offset 17"]


def test_config_error_str_joins_messages():
    err = ConfigError(["a.yaml: x: expected 1", "a.yaml: y: expected 2"])
    assert err.messages == ["a.yaml: x: expected 1", "a.yaml: y: expected 2"]
    assert str(err) == "a.yaml: x: expected 1\na.yaml: y: expected 2"


# ---- secrets never appear in errors ---------------------------------------------------------------------------------

SECRET = "sk-SECRET-0123456789abcdef"


def test_header_values_never_appear_in_errors(tmp_path, capsys):
    path = write(tmp_path, f"""
defaults:
  headers: "Authorization: Bearer {SECRET}"
targets:
  - name: a
    url: https://a.example.com/
    headers:
      Authorization: "Bearer {SECRET}"
      authorization: "Bearer {SECRET}"
      X-Multi: "{SECRET}\\r\\nX-Injected: 1"
      X-Number: 9012345678901234
      X-List: ["{SECRET}"]
      X-Map: {{key: "{SECRET}"}}
      X-Null:
      X-Missing: "{SECRET}${{UNSET_KEY}}"
      X-Bad-Ref: "{SECRET}${{1}}"
      X-Unterminated: "{SECRET}${{"
      X-From-Env: "${{SECRET_WITH_NEWLINE}}"
      "Bad Name": "{SECRET}"
      Content-Length: "{SECRET}"
  - name: a
    url: ftp://nope/
    headers: ["{SECRET}"]
""")
    env = {
        "SECRET_WITH_NEWLINE": f"{SECRET}\nX-Evil: 1",
        "SSE_MONITOR_TARGETS__0__HEADERS__X_ENV": "${ALSO_UNSET}" + SECRET,
        "SSE_MONITOR_DEFAULTS__HEADERS": f"not json {SECRET}",
    }
    messages = errors_of(path, env)
    assert len(messages) >= 14
    for message in messages:
        assert SECRET not in message
        assert "9012345678901234" not in message  # a numeric secret
    assert check_config(path, env) == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err


# ---- check_config ---------------------------------------------------------------------------------------------------


def test_check_config_ok(capsys, monkeypatch):
    monkeypatch.delenv("SSE_MONITOR_DATA_DIR", raising=False)
    assert check_config(EXAMPLE, EXAMPLE_ENV) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()  # between these two, the estimate per day (tests/test_usage.py)
    assert lines[0] == f"{EXAMPLE}: OK, 8 targets"
    assert lines[-1] == "history: the newest 100 runs per target, for at most 7 days, in data/sse-monitor.db"
    assert err == ""


def test_check_config_says_where_history_goes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SSE_MONITOR_DATA_DIR", "/var/lib/sse-monitor")
    assert check_config(write(tmp_path, "server: {history: 20}\nstorage: {retention: 36h}\ntargets: []\n"), {}) == 0
    assert check_config(write(tmp_path, "storage: {path: ':memory:'}\ntargets: []\n"), {},
                        data_dir="/srv/data") == 0
    assert check_config(write(tmp_path, "targets: []\n"), {}, data_dir="/srv/data") == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("history:")]
    assert lines == ["history: the newest 20 runs per target, for at most 1.5 days, in /var/lib/sse-monitor/sse-monitor.db",
                     "history: the newest 100 runs per target, for at most 7 days, in memory only (storage.path: :memory:)",
                     "history: the newest 100 runs per target, for at most 7 days, in /srv/data/sse-monitor.db"]


def test_check_config_counts(tmp_path, capsys):
    assert check_config(write(tmp_path, "targets: []\n"), {}) == 0
    assert check_config(VALID / "minimal.yaml", {}) == 0
    out, _ = capsys.readouterr()
    assert [line for line in out.splitlines() if not line.startswith(("  ", "history:"))] == [
        f"{tmp_path / 'config.yaml'}: OK, 0 targets", f"{VALID / 'minimal.yaml'}: OK, 1 target"]


def test_check_config_reports_every_problem(monkeypatch, capsys):
    monkeypatch.chdir(INVALID)
    assert check_config("multiple_errors.yaml", {}) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (INVALID / "multiple_errors.expected").read_text()


def test_check_config_missing_file(tmp_path, capsys):
    assert check_config(tmp_path / "missing.yaml", {}) == 2
    _, err = capsys.readouterr()
    assert err == f"{tmp_path / 'missing.yaml'}: expected a readable configuration file, but it does not exist\n"


def test_check_config_uses_os_environ_by_default(monkeypatch, capsys):
    for key, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SSE_MONITOR_SCHEDULER__MAX_CONCURRENT", "0")
    assert check_config(EXAMPLE) == 2
    _, err = capsys.readouterr()
    assert err == (
        f"{EXAMPLE}: scheduler.max_concurrent: expected an integer of at least 1, got 0 "
        "(from environment variable SSE_MONITOR_SCHEDULER__MAX_CONCURRENT)\n"
    )


def test_module_exports():
    for name in ("ConfigError", "MonitorConfig", "TargetConfig", "load_config", "parse_duration", "check_config"):
        assert hasattr(config_module, name)
    assert os.fspath(load_config(str(VALID / "minimal.yaml"), {}).source) == str(VALID / "minimal.yaml")
