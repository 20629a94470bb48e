"""Configuration: a YAML file read with pydantic-settings, overridden by SSE_MONITOR_* environment variables.

Layers, lowest first:

1. built-in defaults (the model defaults below, which match `monitor.result`);
2. the YAML file;
3. environment variables named ``SSE_MONITOR_<SECTION>__<FIELD>`` (``__`` separates nesting levels), e.g.
   ``SSE_MONITOR_DEFAULTS__INTERVAL=30s`` or ``SSE_MONITOR_SCHEDULER__MAX_CONCURRENT=10``. A target is addressed
   by its index: ``SSE_MONITOR_TARGETS__0__URL=...``. A variable naming a mapping or list takes JSON
   (``SSE_MONITOR_ALERTMANAGER__URLS='["http://am:9093"]'``); the value ``null`` clears an optional field.
   Variables whose first part is not a section (say ``SSE_MONITOR_LOG_LEVEL``) are not configuration and are
   left alone.

Then ``${VAR}`` and ``${VAR:-default}`` are expanded from the environment in URLs and header values, so secrets
stay out of the file (``$${`` stands for a literal ``${``). Then everything is validated strictly, every error is
collected, and each target inherits whatever it does not set from ``defaults``.

Every error message reads ``FILE: FIELD.PATH: expected WHAT, got WHAT``. A header value is never quoted in an
error: it may hold an API key.

The package, by part:

- ``constants``: names, defaults, patterns and the wording of what each value is expected to be;
- ``errors``: ConfigError, the _Problem each check reports, how paths and values are written in a message;
- ``expand``: ``${VAR}`` expansion;
- ``values``: parsers, field validators, the Annotated field types, ``allowed_targets`` rules;
- ``models``: the pydantic models (MonitorConfig, TargetConfig, ..., MonitorSettings);
- ``sources``: reading the YAML file and the SSE_MONITOR_* environment variables;
- ``rules``: rules across fields;
- ``messages``: problems -> the messages printed, in the order of the file;
- ``loading``: ``load_config`` and ``check_config``.
"""

from __future__ import annotations

from .constants import (
    COMPUTED_HEADERS,
    DEFAULT_ALERTMANAGER_TIMEOUT,
    DEFAULT_DIALECT,
    DEFAULT_INTERVAL,
    DEFAULT_JITTER,
    DEFAULT_LISTEN,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_CONCURRENT_PROBES,
    DEFAULT_RESEND_INTERVAL,
    DIALECTS,
    DURATION_EXPECTED,
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    GENERIC_DIALECT,
    GENERIC_ONLY_FIELDS,
    HEADER_NAME_RE,
    LABEL_NAME_RE,
    LISTEN_EXPECTED,
    METHODS,
    NAME_EXPECTED,
    RESERVED_LABELS,
    SIZE_EXPECTED,
    TARGET_NAME_RE,
    URL_EXPECTED,
)
from .errors import ConfigError, Loc, _fmt_size, format_path
from .expand import expand_env
from .loading import check_config, load_config
from .models import (
    AlertmanagerConfig,
    ChainCheckConfig,
    DefaultsConfig,
    ExpectConfig,
    ModuleConfig,
    MonitorConfig,
    MonitorSettings,
    SchedulerConfig,
    ServerConfig,
    StorageConfig,
    TargetConfig,
)
from .values import (
    AllowedTarget,
    AllowedTargets,
    Body,
    Dialect,
    Duration,
    EventType,
    EventTypes,
    Flag,
    HeaderName,
    Headers,
    HeaderValue,
    JitterDuration,
    LabelName,
    Labels,
    LabelValue,
    Listen,
    Method,
    Model,
    ModuleName,
    OptionalDuration,
    OptionalEventData,
    OptionalEventType,
    OptionalModuleName,
    OptionalPositiveInt,
    OptionalUrl,
    PositiveInt,
    Prompt,
    Size,
    TargetName,
    Url,
    Urls,
    is_probe_url,
    parse_duration,
    parse_size,
)

__all__ = [
    "AlertmanagerConfig",
    "ChainCheckConfig",
    "ConfigError",
    "DefaultsConfig",
    "DIALECTS",
    "ENV_PREFIX",
    "ExpectConfig",
    "MonitorConfig",
    "MonitorSettings",
    "SchedulerConfig",
    "ServerConfig",
    "StorageConfig",
    "TargetConfig",
    "check_config",
    "expand_env",
    "load_config",
    "parse_duration",
    "parse_size",
]
