"""The schema: pydantic models for each section, a target and a module, and MonitorSettings (what
pydantic-settings reads); and the type found at a field path."""

from __future__ import annotations

import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from monitor.chaincheck import DEFAULT_EXPECTED_DURATION, DEFAULT_MAX_IDLE, ChainCheckSpec
from monitor.result import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_PROXY_IDLE_TIMEOUT,
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

from .constants import (
    DEFAULT_ALERTMANAGER_TIMEOUT,
    DEFAULT_CHAIN_CHECK_INTERVAL,
    DEFAULT_DIALECT,
    DEFAULT_HISTORY,
    DEFAULT_INTERVAL,
    DEFAULT_JITTER,
    DEFAULT_LISTEN,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_CONCURRENT_PROBES,
    DEFAULT_RESEND_INTERVAL,
    DEFAULT_DATA_DIR,
    DEFAULT_RETENTION,
    DATA_DIR_ENV,
    HISTORY_FILE,
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
)
from .errors import Loc
from .values import (
    AllowedTargets,
    Body,
    Currency,
    Dialect,
    Duration,
    EventTypes,
    Flag,
    Headers,
    JitterDuration,
    Labels,
    Listen,
    Method,
    Model,
    ModuleName,
    OptionalDuration,
    OptionalEventData,
    OptionalEventType,
    OptionalFilePath,
    OptionalModuleName,
    OptionalRegion,
    OptionalPositiveInt,
    OptionalQueryParam,
    OptionalUrl,
    PerMillion,
    PositiveInt,
    Prompt,
    Size,
    TargetName,
    Url,
    Urls,
    _target_rules,
)


# ---- the schema -----------------------------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=False)


class ExpectConfig(_Section):
    """What a healthy stream looks like."""

    ttft_threshold: Duration = Field(DEFAULT_TTFT_THRESHOLD, description="first token later than this alerts")
    min_duration: OptionalDuration = Field(None, description="a stream ending sooner is 'too_short'")
    min_events: OptionalPositiveInt = Field(None, description="fewer token events is 'too_few_events'")


class ResumeConfig(_Section):
    """The resumption check: after `after_events` token events drop the connection, reconnect with the last event id
    seen, and check that the stream continues right after it (SSEProbeResumeBroken when not)."""

    after_events: PositiveInt = Field(description="token events before the connection is dropped")
    header: Flag = Field(True, description="send the last event id as a Last-Event-ID header")
    query_param: OptionalQueryParam = Field(None, description="also (or instead) send it as this query parameter")

    @model_validator(mode="after")
    def _sends_the_id(self) -> ResumeConfig:
        if not self.header and self.query_param is None:
            raise ValueError("expected header: true or a query_param to carry the last event id on the reconnect, "
                             "got header: false and no query_param")
        return self

    def to_spec(self) -> ResumeSpec:
        return ResumeSpec(after_events=self.after_events, header=self.header, query_param=self.query_param)


class PriceConfig(_Section):
    """What the target's tokens cost, per million (reasoning tokens are output): gives each run a cost."""

    input_per_million: PerMillion = Field(description="the price of a million input tokens")
    output_per_million: PerMillion = Field(description="the price of a million output tokens")
    currency: Currency = Field("USD", description="the `currency` label of sse_probe_cost_total")

    def to_price(self) -> Price:
        return Price(self.input_per_million, self.output_per_million, self.currency)


class DefaultsConfig(_Section):
    """Settings every target inherits unless it sets its own."""

    interval: Duration = DEFAULT_INTERVAL
    timeout: Duration = DEFAULT_TIMEOUT
    idle_timeout: Duration = DEFAULT_IDLE_TIMEOUT
    proxy_idle_timeout: Duration = DEFAULT_PROXY_IDLE_TIMEOUT
    ttft_threshold: Duration = DEFAULT_TTFT_THRESHOLD
    min_duration: OptionalDuration = None
    min_events: OptionalPositiveInt = None
    dialect: Dialect = DEFAULT_DIALECT
    prompt: Prompt = DEFAULT_PROMPT
    verify_tls: Flag = True
    max_event_bytes: Size = DEFAULT_MAX_EVENT_BYTES
    max_stream_bytes: Size = DEFAULT_MAX_STREAM_BYTES
    max_events: PositiveInt = DEFAULT_MAX_EVENTS
    resume: ResumeConfig | None = Field(None, description="the resumption check of every target that sets none")
    max_output_tokens: PositiveInt = DEFAULT_MAX_OUTPUT_TOKENS
    price: PriceConfig | None = Field(None, description="the price of every target that sets none")
    headers: Headers = Field(default_factory=dict, repr=False, description="merged under each target's headers")
    labels: Labels = Field(default_factory=dict, description="merged under each target's labels")


# target fields that fall back to the same-named field of `defaults`
_INHERITED = (
    "dialect", "interval", "timeout", "idle_timeout", "proxy_idle_timeout", "prompt", "verify_tls", "max_event_bytes",
    "max_stream_bytes", "max_events", "resume", "max_output_tokens", "price",
)
_INHERITED_EXPECT = ("ttft_threshold", "min_duration", "min_events")


class _ProbeSettings(_Section):
    """How to probe and what a healthy stream looks like: what a target and a module (a template) both carry."""

    dialect: Dialect = Field(DEFAULT_DIALECT, description="the API's streaming format: how the request is built "
                                                          "and which events are tokens")
    timeout: Duration = Field(DEFAULT_TIMEOUT, description="the whole stream must end within this; at least "
                                                           "idle_timeout")
    idle_timeout: Duration = Field(DEFAULT_IDLE_TIMEOUT, description="the longest silence (not a byte) tolerated "
                                                                     "mid-stream")
    proxy_idle_timeout: Duration = Field(
        DEFAULT_PROXY_IDLE_TIMEOUT, description="the shortest idle timeout of a proxy on the path (nginx, ALB: 60 s); "
                                                "SSEProbeSilenceNearIdleTimeout warns when a silence exceeds half of it")
    prompt: Prompt = Field(DEFAULT_PROMPT, description="the prompt the dialect's request body carries")
    model: Model = Field(None, description="the model to ask for; null: the dialect's default model")
    method: Method = Field(None, description="the HTTP method; null: the dialect's (POST for LLM APIs, GET for "
                                             "generic without a body)")
    headers: Headers = Field(default_factory=dict, repr=False,  # repr=False: values may be API keys
                             description="request headers, merged over defaults.headers; ${VAR} keeps keys out of "
                                         "the file")
    body: Body = Field(None, description="the request body, replacing the dialect's: a mapping is sent as JSON, a "
                                         "string as is")
    expect: ExpectConfig = Field(default_factory=ExpectConfig, description="what a healthy stream looks like")
    verify_tls: Flag = Field(True, description="false accepts any certificate (self-signed test servers)")
    heartbeat_events: EventTypes = Field(default_factory=list, description="generic dialect only")
    terminal_event: OptionalEventType = Field(None, description="generic dialect only")
    terminal_data: OptionalEventData = Field(None, description="generic dialect only")
    error_event: OptionalEventType = Field(None, description="generic dialect only: this event type is an error")
    max_event_bytes: Size = Field(DEFAULT_MAX_EVENT_BYTES, description="the longest line or event accepted; more "
                                                                       "fails as event_too_large")
    max_stream_bytes: Size = Field(DEFAULT_MAX_STREAM_BYTES, description="body bytes; more fails as too_many_bytes")
    max_events: PositiveInt = Field(DEFAULT_MAX_EVENTS, description="events and comments; more: too_many_events")
    resume: ResumeConfig | None = Field(None, description="the resumption check; null: none")
    max_output_tokens: PositiveInt = Field(DEFAULT_MAX_OUTPUT_TOKENS, description="the answer's token cap in the "
                                           "dialect's own body (max_completion_tokens, max_output_tokens, ...)")
    price: PriceConfig | None = Field(None, description="what tokens cost: each run's cost; null: none")

    @property
    def body_bytes(self) -> bytes | None:
        """The request body as sent: a mapping as compact JSON, a string as UTF-8."""
        if self.body is None:
            return None
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def to_spec(self, trace: bool = False, url: str | None = None) -> ProbeSpec:
        """The probe's input: everything the probe needs, once defaults are applied (see `inherit`)."""
        return ProbeSpec(
            url=url or self.url,
            dialect=self.dialect,
            prompt=self.prompt,
            model=self.model,
            headers=dict(self.headers),
            body=self.body_bytes,
            method=self.method,
            ttft_threshold=self.expect.ttft_threshold,
            min_duration=self.expect.min_duration,
            min_events=self.expect.min_events,
            timeout=self.timeout,
            idle_timeout=self.idle_timeout,
            max_event_bytes=self.max_event_bytes,
            max_stream_bytes=self.max_stream_bytes,
            max_events=self.max_events,
            heartbeat_events=tuple(self.heartbeat_events),
            terminal_event=self.terminal_event,
            terminal_data=self.terminal_data,
            error_event=self.error_event,
            verify_tls=self.verify_tls,
            trace=trace,
            resume=self.resume.to_spec() if self.resume is not None else None,
            max_output_tokens=self.max_output_tokens,
            price=self.price.to_price() if self.price is not None else None,
        )

    def inherit(self, defaults: DefaultsConfig) -> Any:
        """These settings with every field not set here taken from `defaults` (headers merged)."""
        own = self.model_fields_set
        update: dict[str, Any] = {
            key: getattr(defaults, key) for key in _INHERITED if key not in own and key in type(self).model_fields
        }
        update["headers"] = _merge_headers(defaults.headers, self.headers)
        if "labels" in type(self).model_fields:
            update["labels"] = {**defaults.labels, **self.labels}
        own_expect = self.expect.model_fields_set if "expect" in own else set()
        update["expect"] = self.expect.model_copy(
            update={key: getattr(defaults, key) for key in _INHERITED_EXPECT if key not in own_expect}
        )
        return self.model_copy(update=update)

    def set_from(self, template: _ProbeSettings) -> Any:
        """These settings with every probe setting not set here taken from a module's (then still open to
        `defaults` for what neither sets)."""
        own = self.model_fields_set
        given = template.model_fields_set
        update: dict[str, Any] = {key: getattr(template, key) for key in _ProbeSettings.model_fields
                                  if key in given and key not in own and key not in ("headers", "expect")}
        update["headers"] = _merge_headers(template.headers, self.headers)
        if "expect" in given:
            own_expect = self.expect.model_fields_set if "expect" in own else set()
            update["expect"] = self.expect.model_copy(update={
                key: getattr(template.expect, key) for key in template.expect.model_fields_set if key not in own_expect
            })
        return self.model_copy(update=update)  # what it took counts as set: `defaults` will not replace it


def _merge_headers(under: Mapping[str, str], over: Mapping[str, str]) -> dict[str, str]:
    """Header mappings merged case-insensitively, `over` winning."""
    names = {name.lower() for name in over}
    return {**{k: v for k, v in under.items() if k.lower() not in names}, **over}


class ModuleConfig(_ProbeSettings):
    """A named probe template: what `/probe?module=NAME` runs, and what targets with `module: NAME` start from."""

    allowed_targets: AllowedTargets = Field(
        default_factory=list,
        description="URL prefixes, or regular expressions starting with ^, that /probe may reach with this module",
    )

    def allows(self, url: str) -> bool:
        """Whether /probe may send this module's request (and headers) to `url`."""
        return any(rule.allows(url) for rule in _target_rules(tuple(self.allowed_targets)))


class TargetConfig(_ProbeSettings):
    """One monitored endpoint. After `load_config` every field is final (module and defaults applied, ${VAR}
    expanded)."""

    name: TargetName = Field(description="unique; the Prometheus `target` label")
    url: Url = Field(description="http or https URL; ${VAR} expanded")
    module: OptionalModuleName = Field(None, description="a module whose settings this target starts from")
    interval: Duration = Field(DEFAULT_INTERVAL, description="time between two runs of the target")
    labels: Labels = Field(default_factory=dict, description="extra labels on this target's alerts")


class SchedulerConfig(_Section):
    """When runs start."""

    max_concurrent: PositiveInt = Field(DEFAULT_MAX_CONCURRENT, description="global cap on concurrent streams")
    jitter: JitterDuration = Field(DEFAULT_JITTER, description="random delay per run (max interval/2); rate unchanged")


class ServerConfig(_Section):
    """The HTTP server: /metrics, /probe, the pages and the JSON API."""

    listen: Listen = Field(DEFAULT_LISTEN, description="HOST:PORT of the /metrics server; [::]:9108 for IPv6")
    external_url: OptionalUrl = Field(None, description="base URL of this monitor for links (alert generatorURL)")
    max_concurrent_probes: PositiveInt = Field(
        DEFAULT_MAX_CONCURRENT_PROBES, description="/probe requests running at once; more are answered 503"
    )
    history: PositiveInt = Field(
        DEFAULT_HISTORY, description="runs kept per target (in the history file) for the pages and the JSON history"
    )

    @property
    def host(self) -> str:
        host = self.listen.rpartition(":")[0]
        return host[1:-1] if host.startswith("[") else host

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class StorageConfig(_Section):
    """Where every finished run is kept (SQLite), and for how long."""

    path: OptionalFilePath = Field(
        None, description='the run-history SQLite file; null: sse-monitor.db in the data directory (--data-dir, '
                          'SSE_MONITOR_DATA_DIR, default ./data); ":memory:" keeps history in this process only'
    )
    retention: Duration = Field(
        DEFAULT_RETENTION, description="runs older than this are deleted (server.history bounds the count per target)"
    )

    def file(self, data_dir: str | None = None) -> str:
        """The history file: `path`, or sse-monitor.db in the data directory (the argument, else
        SSE_MONITOR_DATA_DIR, else ./data)."""
        if self.path is not None:
            return self.path
        return str(Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR) / HISTORY_FILE)


class AlertmanagerConfig(_Section):
    """Pushing alerts to Alertmanager directly (besides, or instead of, Prometheus alerting rules)."""

    urls: Urls = Field(default_factory=list, description="Alertmanager base URLs; empty: no direct push")
    resend_interval: Duration = Field(DEFAULT_RESEND_INTERVAL, description="firing alerts are sent again this often")
    timeout: Duration = Field(DEFAULT_ALERTMANAGER_TIMEOUT, description="per push")
    fire_after: PositiveInt = Field(1, description="consecutive bad runs before an alert fires")
    resolve_after: PositiveInt = Field(1, description="consecutive good runs before it resolves")
    labels: Labels = Field(default_factory=dict, description="extra labels on every alert")
    runbook_base_url: OptionalUrl = Field(None, description="alerts link BASE/<alertname>.md as runbook_url; null: "
                                                            "no link")


class ChainCheckConfig(_Section):
    """A scheduled `chain-check` of the proxy chain in front of an `sse-monitor canary`."""

    name: TargetName = Field(description="unique; the Prometheus `chain` label")
    url: Url = Field(description="the canary, reached through the chain; ${VAR} expanded")
    interval: Duration = Field(DEFAULT_CHAIN_CHECK_INTERVAL, description="how often (a check lasts minutes)")
    expected_duration: Duration = Field(DEFAULT_EXPECTED_DURATION, description="the longest stream you serve")
    max_idle: Duration = Field(DEFAULT_MAX_IDLE, description="the longest silence tried")
    max_duration: OptionalDuration = Field(None, description="how long a busy stream is kept open; null: twice "
                                                             "expected_duration")
    headers: Headers = Field(default_factory=dict, repr=False, description="sent with every trial, e.g. auth")
    verify_tls: Flag = Field(True, description="false accepts any certificate")

    def to_spec(self) -> ChainCheckSpec:
        return ChainCheckSpec(url=self.url, expected_duration=self.expected_duration, max_idle=self.max_idle,
                              max_duration=self.max_duration, headers=dict(self.headers), verify_tls=self.verify_tls)


class MonitorConfig(_Section):
    """The whole configuration. Build it with `load_config`; `source` is the file it came from.

    (A plain model: pydantic validates a BaseSettings subclass through its __init__, which would read os.environ
    again and drop the validation context. `MonitorSettings` is the BaseSettings twin the sources read.)
    """

    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig, description="settings every target inherits "
                                                                              "unless it sets its own")
    modules: dict[ModuleName, ModuleConfig] = Field(default_factory=dict, description="named probe templates, for "
                                                    "/probe?module=NAME and targets' `module: NAME`")
    targets: list[TargetConfig] = Field(default_factory=list, description="the endpoints probed on a schedule")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig, description="when runs start")
    server: ServerConfig = Field(default_factory=ServerConfig, description="the HTTP server: /metrics, /probe, pages")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="where the run history is kept")
    alertmanager: AlertmanagerConfig = Field(default_factory=AlertmanagerConfig,
                                             description="pushing alerts to Alertmanager directly")
    chain_checks: list[ChainCheckConfig] = Field(default_factory=list, description="scheduled checks of the proxy "
                                                 "chain in front of an `sse-monitor canary`")
    region: OptionalRegion = Field(
        None, description="where this monitor probes from: a `region` label on every target's series and alert"
    )

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The configuration file this was loaded from."""
        return self._source

    def target(self, name: str) -> TargetConfig:
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)


class MonitorSettings(MonitorConfig, BaseSettings):
    """The settings-source view of MonitorConfig: environment prefix, nesting delimiter, ... for pydantic-settings.
    `MonitorSettings()` reads SSE_MONITOR_* from os.environ alone (no file, no ${VAR}, no cross-field rules);
    use `load_config` for the real thing."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
        env_parse_none_str="null",
        extra="forbid",
        validate_default=False,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings


# ---- the type at a field path (for environment variables and messages) ---------------------------------------------


def _strip_type(tp: Any) -> Any:
    """Annotated[X, ...] -> X; Optional[X] -> X; any other union is returned as is."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _child_type(tp: Any, key: str | int) -> Any:
    """The type at `key` inside `tp` (a model, dict or list type), or None when there is no such place."""
    tp = _strip_type(tp)
    if _is_model(tp):
        info = tp.model_fields.get(key) if isinstance(key, str) else None
        return None if info is None else info.annotation
    origin = typing.get_origin(tp)
    if origin is dict and isinstance(key, str):
        return typing.get_args(tp)[1]
    if origin is list and isinstance(key, int):
        return typing.get_args(tp)[0]
    return None


def _type_at(loc: Loc) -> Any:
    tp: Any = MonitorConfig
    for key in loc:
        tp = _child_type(tp, key)
        if tp is None:
            return None
    return tp
