"""The configuration's JSON Schema: current in the repository, printed by `sse-monitor config-schema`, accepting every
example configuration and, value by value, what check-config accepts; rejecting the invalid files it can judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from conftest import ROOT, sse_monitor
from monitor.config import ConfigError, load_config, values
from monitor.config.schema import SCHEMA_FILE, SCHEMA_ID, TYPE_SCHEMAS, config_json_schema
from monitor.config.sources import _read_document

SCHEMA = json.loads((ROOT / SCHEMA_FILE).read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)
CONFIGS = ROOT / "tests" / "configs"
EXAMPLES = sorted([
    ROOT / "config" / "example.yaml",
    ROOT / "config" / "compose" / "sse-monitor.yaml",
    ROOT / "deploy" / "kubernetes" / "base" / "config.yaml",
    ROOT / "monitor" / "demo.yaml",
    *(CONFIGS / "valid").glob("*.yaml"),
])

# Invalid files the schema cannot judge, by why; every other file in tests/configs/invalid must fail the schema too.
BEYOND_THE_SCHEMA = {
    "not YAML the editor reads as one mapping": {
        "comments_only", "empty", "multiple_documents", "not_a_mapping", "unsafe_tag", "yaml_syntax", "yaml_tab"},
    "a key given twice": {"duplicate_key"},
    "a number that is not finite (JSON has none)": {"body_not_json"},
    "${VAR} references": {"bad_env_reference", "unterminated_env_reference", "missing_env_var", "missing_env_var_in_url"},
    "SSE_MONITOR_* environment overrides": {
        "env_override_bad_index", "env_override_bad_json", "env_override_bad_value", "env_override_unknown_key"},
    "rules across fields": {
        "defaults_timeout_below_idle", "duplicate_alertmanager_url", "duplicate_header", "duplicate_name",
        "event_limit_above_stream_budget", "generic_only_setting", "idle_above_timeout", "max_events_below_min_events",
        "min_duration_above_timeout", "min_events_above_max_events", "module_timeouts", "stream_budget_below_event_limit",
        "timeout_below_idle", "unknown_module"},
}


def schema_errors(data: object) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(data)]


def test_the_committed_schema_is_current_and_is_what_config_schema_prints() -> None:
    assert SCHEMA == config_json_schema(), f"{SCHEMA_FILE} is stale: run scripts/docs"
    proc = sse_monitor("config-schema")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == SCHEMA
    Draft202012Validator.check_schema(SCHEMA)
    # no inline flags nor lookaround: the patterns must also compile in Go's RE2 (Helm validates values with them)
    assert "(?" not in json.dumps(SCHEMA)


def test_the_example_names_the_schema_for_yaml_editors() -> None:
    first = (ROOT / "config" / "example.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# yaml-language-server: $schema={SCHEMA_ID}"
    assert SCHEMA_ID.endswith("/main/" + SCHEMA_FILE)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_configuration_is_valid_under_the_schema(path: Path) -> None:
    assert schema_errors(_read_document(path).data) == []


BEYOND = set().union(*BEYOND_THE_SCHEMA.values())
JUDGED = sorted(p for p in (CONFIGS / "invalid").glob("*.yaml") if p.stem not in BEYOND)


@pytest.mark.parametrize("path", JUDGED, ids=lambda p: p.stem)
def test_invalid_files_are_rejected_by_the_schema_and_by_check_config(path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(path, {})
    assert schema_errors(_read_document(path).data), f"{path.name}: check-config rejects it, the schema accepts it"


def test_most_invalid_files_are_judged_by_the_schema() -> None:
    assert len(JUDGED) >= 40 > len(BEYOND)


def test_the_list_of_what_the_schema_cannot_judge_names_existing_files_the_schema_accepts() -> None:
    for stems in BEYOND_THE_SCHEMA.values():
        for stem in stems:
            path = CONFIGS / "invalid" / f"{stem}.yaml"
            assert path.exists(), stem
            try:
                data = _read_document(path).data
            except ValueError:
                continue  # not a mapping at all: nothing for a schema to see
            assert schema_errors(data) == [], f"{stem} is rejected by the schema: take it off BEYOND_THE_SCHEMA"


TARGET = "targets:\n  - name: api\n    url: https://api.example.com/v1/chat/completions\n"

# One setting at a time: check-config and the schema must agree on each.
SAMPLES = [
    *(f"defaults:\n  interval: {v}\n" for v in (
        "30s", "1m30s", "1h 30m", "250ms", "1d", "90", "2.5", "'90'", ".5s", "1.5h", "0s", "0", "-5", "soon", "30s1m",
        "5m5m", "'1 h'", "''", "true", "1e3", "[]")),
    *(f"scheduler:\n  jitter: {v}\n" for v in ("0", "0s", "5s", "-1", "x", "''", "' '", "'1m 0s'")),
    *(f"defaults:\n  max_event_bytes: {v}\n  max_stream_bytes: 1GiB\n" for v in (
        "1048576", "64KiB", "1MiB", "1MB", "'2 mb'", "0", "0KiB", "1 MiBs", "1.5MiB", "-1", "1TiB")),
    *(f"scheduler:\n  max_concurrent: {v}\n" for v in ("1", "'10'", "' +7 '", "0", "-3", "1.5", "ten", "'0'")),
    *(f"defaults:\n  verify_tls: {v}\n" for v in ("true", "false", "'yes'", "'Off'", "' TRUE '", "maybe", "1", "'1'")),
    *(f"server:\n  listen: {v}\n" for v in (
        "0.0.0.0:9108", "'[::]:9108'", "localhost:0", "'0.0.0.0:65535'", "'0.0.0.0:65536'", "'h:123456'", "9108",
        "':9108'", "'a b:1'")),
    *(f"server:\n  external_url: {v}\n" for v in (
        "https://m.example.com", "'HTTP://m:8080/x?y#z'", "'http://[::1]:9108/'", "https://u@h.example.com/",
        "ftp://h/", "h.example.com", "'http://h:99999/'", "'https:///x'", "'http://h /'", "null")),
    TARGET + "    intervall: 30s\n",
    *(f"targets:\n  - name: {v}\n    url: https://h.example.com/\n" for v in (
        "api", "a.b:c-d_e", "'-a'", "'my api'", "''", "x" * 64, "x" * 65)),
    *(TARGET + f"    method: {v}\n" for v in ("post", "' GET '", "FETCH", "null")),
    *(TARGET + f"    dialect: {v}\n" for v in ("anthropic", "generic", "openai")),
    *(TARGET + f"    headers: {{{v}}}\n" for v in (
        "X-Key: abc", "'X Key': abc", "content-length: '1'", "X-Key: 12", "X-Key: ''")),
    *(TARGET + f"    labels: {{{v}}}\n" for v in ("team: a", "team: ''", "__x: a", "target: a", "9x: a", "team: ' '")),
    *(TARGET + f"    resume: {v}\n" for v in (
        "{after_events: 3}", "{after_events: 3, query_param: resume}", "{after_events: 3, query_param: 'a b'}",
        "{after_events: 0}", "{}")),
    *(f"modules:\n  m:\n    allowed_targets: [{v}]\n" for v in (
        "'https://api.example.com/v1/'", "'^https://.*'", "api.example.com", "'https://u@api.example.com/'")),
    *(TARGET + f"    body: {v}\n" for v in ("{a: 1}", "'raw'", "[1]", "null")),
    *(TARGET + f"    prompt: {v}\n" for v in ("hi", "''", "'  '", "\"two\\nlines\"")),
    *(f"region: {v}\n" for v in ("eu-west", "null", "''", "3")),
]


@pytest.mark.parametrize("text", SAMPLES)
def test_the_schema_and_check_config_agree_on_each_value(text: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path, {})
        accepted = True
    except ConfigError:
        accepted = False
    assert (schema_errors(_read_document(path).data) == []) == accepted, f"check-config accepts: {accepted}"


def test_the_samples_hold_values_both_accept_and_both_refuse(tmp_path: Path) -> None:
    verdicts = set()
    for text in SAMPLES:
        path = tmp_path / "config.yaml"
        path.write_text(text, encoding="utf-8")
        verdicts.add(schema_errors(_read_document(path).data) == [])
    assert verdicts == {True, False}


# Random strings over each value's alphabet: the type's schema accepts exactly what its validator accepts.
def _accepts(check, text: str) -> bool:
    try:
        check(text)
    except ValueError:
        return False
    return True


def _url(text: str) -> None:
    """The URL check of a target's url once ${VAR}s are expanded (none here)."""
    if not values.is_http_url(text):
        raise ValueError(text)


@pytest.mark.parametrize("annotated, check, alphabet", [
    (values.Duration, values._v_duration, "0123.dhms "),
    (values.JitterDuration, values.parse_duration, "01.hms "),
    (values.Size, values.parse_size, "0123 kKmMiIbBgG"),
    (values.PositiveInt, values._parse_positive_int, "01+- 9"),
    (values.Flag, values._parse_bool, "tTrRuUeEfalsyon01 "),
    (values.Listen, values._v_listen, "0.:a9 6-"),
    (values.Url, _url, "hH:/pPtTsS@?#.0 9x6"),
], ids=["duration", "jitter", "size", "positive_int", "flag", "listen", "url"])
def test_a_types_schema_accepts_what_its_validator_accepts(annotated, check, alphabet) -> None:
    validator = Draft202012Validator(TYPE_SCHEMAS[annotated])

    @settings(max_examples=400, deadline=None)
    @given(st.text(alphabet=alphabet, max_size=10))
    def agree(text: str) -> None:
        assert validator.is_valid(text) == _accepts(check, text), text

    agree()
