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
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import json
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from monitor.dialects import DIALECTS as _DIALECT_CLASSES
from monitor.result import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_PROXY_IDLE_TIMEOUT,
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_STREAM_BYTES,
    DEFAULT_PROMPT,
    DEFAULT_TIMEOUT,
    DEFAULT_TTFT_THRESHOLD,
    ProbeSpec,
)

__all__ = [
    "AlertmanagerConfig",
    "ConfigError",
    "DefaultsConfig",
    "DIALECTS",
    "ENV_PREFIX",
    "ExpectConfig",
    "MonitorConfig",
    "MonitorSettings",
    "SchedulerConfig",
    "ServerConfig",
    "TargetConfig",
    "check_config",
    "expand_env",
    "load_config",
    "parse_duration",
    "parse_size",
]

ENV_PREFIX = "SSE_MONITOR_"
ENV_NESTED_DELIMITER = "__"

DIALECTS = tuple(_DIALECT_CLASSES)
GENERIC_DIALECT = "generic"
GENERIC_ONLY_FIELDS = ("heartbeat_events", "terminal_event", "terminal_data", "error_event")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
RESERVED_LABELS = ("alertname", "target", "severity")  # set by sse-monitor on every alert
COMPUTED_HEADERS = ("content-length", "transfer-encoding")  # the HTTP client sets these from the body

DEFAULT_INTERVAL = 60.0
DEFAULT_DIALECT = "openai-chat"
# Streams open at once. Measured with the real process on one core (bench/process.py, 20 events/s a stream): 200 streams
# take ~35 % of the core and ~70 MB, ~630 saturate it. 400 leaves headroom for scrapes and faster streams; the cap
# bounds CPU and memory, never timing precision (kernel stamps), and runs that wait for it are counted.
DEFAULT_MAX_CONCURRENT = 400
DEFAULT_MAX_CONCURRENT_PROBES = 50  # /probe runs at once: Prometheus scrapes them on its own schedule
DEFAULT_JITTER = 5.0
DEFAULT_LISTEN = "0.0.0.0:9108"
DEFAULT_RESEND_INTERVAL = 60.0
DEFAULT_ALERTMANAGER_TIMEOUT = 10.0

TARGET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
LABEL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")

DURATION_EXPECTED = "expected a duration such as 30s, 5m, 1h or a number of seconds"
URL_EXPECTED = "expected an http or https URL with a host"
LISTEN_EXPECTED = "expected HOST:PORT such as 0.0.0.0:9108, localhost:9108 or [::]:9108"
SIZE_EXPECTED = "expected a size in bytes such as 1048576, 64KiB or 1MiB"
NAME_EXPECTED = "expected a name of 1 to 64 letters, digits and _ . : - starting with a letter or digit"


# ---- errors ---------------------------------------------------------------------------------------------------------


class ConfigError(Exception):
    """An invalid or unreadable configuration. `messages` holds every problem, each prefixed with the file name."""

    def __init__(self, messages: Iterable[str]):
        self.messages: list[str] = list(messages)
        super().__init__("\n".join(self.messages))

    def __str__(self) -> str:
        return "\n".join(self.messages)


Loc = tuple[str | int, ...]


@dataclass
class _Problem:
    loc: Loc
    message: str  # starts with "expected ..." (or names the problem), never with the path
    env_var: str | None = None


def format_path(loc: Iterable[str | int]) -> str:
    """('targets', 1, 'interval') -> 'targets[1].interval'; odd keys are quoted: headers['a b']."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _describe(value: Any, secret: bool = False) -> str:
    """What was found, for the 'got ...' half of a message. A secret is described by its type only."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if secret:
            return "a string"
        text = value if len(value) <= 80 else value[:77] + "..."
        return repr(text)
    if isinstance(value, (int, float)) and not secret:
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    name = type(value).__name__
    return f"an {name}" if name[:1] in "aeiou" else f"a {name}"


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def _fmt_size(size: int) -> str:
    """1048576 -> '1MiB', 65536 -> '64KiB', 1000 -> '1000B': the way sizes are written in the file."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


# ---- scalar parsers -------------------------------------------------------------------------------------------------

_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|d|h|m|s)")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?|\.\d+")


def parse_duration(value: Any) -> float:
    """'250ms', '30s', '5m', '1h', '1d', '1m30s', '1h 30m', 90, 2.5 or '90' -> seconds (float, >= 0).

    Units must come largest first, each at most once. Raises ValueError("expected a duration ..., got ...").
    """
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = "".join(value.split())
        if _NUMBER_RE.fullmatch(text):
            seconds = float(text)
        elif text:
            pos, total, last_rank = 0, 0.0, -1
            units = list(_DURATION_UNITS)
            while pos < len(text):
                m = _DURATION_PART_RE.match(text, pos)
                if not m or units.index(m.group(2)) <= last_rank:
                    break
                last_rank = units.index(m.group(2))
                total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
                pos = m.end()
            else:
                seconds = total
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{DURATION_EXPECTED}, got {_describe(value)}")
    return seconds


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_SIZE_RE = re.compile(r"(\d+)\s*([A-Za-z]*)")


def parse_size(value: Any) -> int:
    """1048576, '1048576', '64KiB', '1MiB', '1MB' -> bytes (int, >= 1)."""
    size: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str):
        m = _SIZE_RE.fullmatch(value.strip())
        if m and m.group(2).lower() in _SIZE_UNITS:
            size = int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if size is None or size < 1:
        raise ValueError(f"{SIZE_EXPECTED}, got {_describe(value)}")
    return size


def _parse_positive_int(value: Any) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        number = int(value)
    if number is None:
        raise ValueError(f"expected an integer of at least 1, got {_describe(value)}")
    if number < 1:
        raise ValueError(f"expected an integer of at least 1, got {number}")
    return number


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:  # environment variables are strings
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {_describe(value)}")


# ---- ${VAR} expansion -----------------------------------------------------------------------------------------------

_VAR_RE = re.compile(r"\$\$(?=\{)|\$\{([^}]*)\}|\$\{")
_VAR_BODY_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def expand_env(text: str, environ: Mapping[str, str]) -> str:
    """Replace ${NAME} and ${NAME:-default} (default used when NAME is unset or empty); $${ is a literal ${.

    Raises ValueError naming the variables that are unset and have no default. The message never quotes `text`.
    """
    missing: list[str] = []

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        body = m.group(1)
        if body is None:
            raise ValueError("expected ${NAME} or ${NAME:-default}, got a '${' without its closing '}'")
        ref = _VAR_BODY_RE.fullmatch(body)
        if not ref:
            raise ValueError(
                "expected ${NAME} or ${NAME:-default} with NAME made of letters, digits and _, "
                "got a malformed ${...} reference"
            )
        name, default = ref.group(1), ref.group(2)
        if default is not None and "${" in default:
            raise ValueError(f"expected a plain default in ${{{name}:-...}}, got a nested ${{...}} reference")
        current = environ.get(name)
        if current is None or (default is not None and current == ""):
            if default is None:
                missing.append(name)
                return ""
            return default
        return current

    out = _VAR_RE.sub(replace, text)
    if missing:
        names = list(dict.fromkeys(missing))
        if len(names) == 1:
            raise ValueError(f"expected environment variable {names[0]} to be set (it has no default)")
        raise ValueError(f"expected environment variables {', '.join(names)} to be set (they have no default)")
    return out


def _environ(info: ValidationInfo) -> Mapping[str, str]:
    context = info.context or {}
    environ = context.get("environ") if isinstance(context, Mapping) else None
    return os.environ if environ is None else environ


# ---- field validators (each raises ValueError("expected ..., got ...")) ---------------------------------------------


def _v_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration greater than zero, got {_describe(value)}")
    return seconds


def _v_optional_duration(value: Any) -> float | None:
    return None if value is None else _v_duration(value)


def _v_optional_positive_int(value: Any) -> int | None:
    return None if value is None else _parse_positive_int(value)


def _string_checker(what: str, *, empty: bool = False, single_line: bool = True) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected {what}, got {_describe(value)}")
        if not empty and not value.strip():
            raise ValueError(f"expected {what}, got an empty string")
        if single_line and any(c in value for c in "\r\n\x00"):
            raise ValueError(f"expected {what} on a single line, got {_describe(value)}")
        return value

    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _v_name(value: Any) -> str:
    if not isinstance(value, str) or not TARGET_NAME_RE.fullmatch(value):
        raise ValueError(f"{NAME_EXPECTED}, got {_describe(value)}")
    return value


def _v_dialect(value: Any) -> str:
    if not isinstance(value, str) or value not in DIALECTS:
        raise ValueError(f"expected one of {', '.join(DIALECTS)}, got {_describe(value)}")
    return value


def _v_method(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().upper() not in METHODS:
        raise ValueError(f"expected one of {', '.join(METHODS)}, got {_describe(value)}")
    return value.strip().upper()


def _url_ok(url: str) -> bool:
    from urllib.parse import urlsplit

    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _v_url(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{URL_EXPECTED}, got {_describe(value)}")
    expanded = expand_env(value, _environ(info))
    if not _url_ok(expanded):
        # quote the URL as written: after expansion it may carry a secret (e.g. ?key=${GEMINI_API_KEY})
        note = " (after expanding environment variables)" if expanded != value else ""
        raise ValueError(f"{URL_EXPECTED}, got {_describe(value)}{note}")
    return expanded


def _v_optional_url(value: Any, info: ValidationInfo) -> str | None:
    return None if value is None else _v_url(value, info)


def _v_listen(value: Any) -> str:
    ok = False
    if isinstance(value, str):
        m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", value.strip())
        if m:
            v6, port6, host, port = m.groups()
            try:
                if v6 is not None:
                    ipaddress.IPv6Address(v6)
                    ok = int(port6) <= 65535
                else:
                    ok = int(port) <= 65535 and bool(_HOSTNAME_RE.fullmatch(host))
            except ValueError:
                ok = False
    if not ok:
        raise ValueError(f"{LISTEN_EXPECTED}, got {_describe(value)}")
    return value.strip()


def _v_mapping(what: str, secret: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected {what}, got {_describe(value, secret=secret)}")
        return value

    return check


def _v_list(what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError(f"expected {what}, got {_describe(value)}")
        return value

    return check


def _v_header_name(value: Any) -> str:
    if not isinstance(value, str) or not HEADER_NAME_RE.fullmatch(value):
        raise ValueError(
            "expected a header name made of letters, digits and !#$%&'*+-.^_`|~, " f"got {_describe(value)}"
        )
    if value.lower() in COMPUTED_HEADERS:
        raise ValueError(f"expected a header the HTTP client does not compute from the body, got {value!r}")
    return value


def _v_header_value(value: Any, info: ValidationInfo) -> str:
    # Never quote the value: it may be (or, once expanded, contain) an API key.
    if not isinstance(value, str):
        raise ValueError(f"expected a string (quote it), got {_describe(value, secret=True)}")
    expanded = expand_env(value, _environ(info))
    if any(c in expanded for c in "\r\n\x00"):
        raise ValueError("expected a single-line value, got one with a CR, LF or NUL character")
    return expanded


def _v_label_name(value: Any) -> str:
    if not isinstance(value, str) or not LABEL_NAME_RE.fullmatch(value):
        raise ValueError(f"expected a Prometheus label name matching [a-zA-Z_][a-zA-Z0-9_]*, got {_describe(value)}")
    if value.startswith("__"):
        raise ValueError(f"expected a label name not starting with __ (reserved by Prometheus), got {value!r}")
    if value in RESERVED_LABELS:
        raise ValueError(
            f"expected a label name other than {', '.join(RESERVED_LABELS)} (set by sse-monitor), got {value!r}"
        )
    return value


def _json_problem(value: Any, where: str) -> str | None:
    """What in `value` (from YAML) cannot become JSON, as 'a <what> at <where>'; None when all is well."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"a number that is not finite at {where}"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"a key that is not a string in {where}"
            problem = _json_problem(item, f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = _json_problem(item, f"{where}[{i}]")
            if problem:
                return problem
        return None
    return f"{_describe(value, secret=True)} at {where}"


def _v_body(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(
            f"expected a mapping (sent as JSON) or a string (sent as-is), got {_describe(value, secret=True)}"
        )
    problem = _json_problem(value, "body")
    if problem:
        raise ValueError(
            f"expected a mapping of JSON values (strings, numbers, true/false, null, lists, mappings), got {problem}"
        )
    return dict(value)


# ---- annotated types ------------------------------------------------------------------------------------------------

Duration = Annotated[float, BeforeValidator(_v_duration)]
OptionalDuration = Annotated[float | None, BeforeValidator(_v_optional_duration)]


def _v_jitter(value: Any) -> float:
    return parse_duration(value)


JitterDuration = Annotated[float, BeforeValidator(_v_jitter)]
PositiveInt = Annotated[int, BeforeValidator(_parse_positive_int)]
OptionalPositiveInt = Annotated[int | None, BeforeValidator(_v_optional_positive_int)]
Size = Annotated[int, BeforeValidator(parse_size)]
Flag = Annotated[bool, BeforeValidator(_parse_bool)]
TargetName = Annotated[str, BeforeValidator(_v_name)]
Dialect = Annotated[str, BeforeValidator(_v_dialect)]
Method = Annotated[str | None, BeforeValidator(_v_method)]
Url = Annotated[str, BeforeValidator(_v_url)]
OptionalUrl = Annotated[str | None, BeforeValidator(_v_optional_url)]
Listen = Annotated[str, BeforeValidator(_v_listen)]
Prompt = Annotated[str, BeforeValidator(_string_checker("a non-empty prompt string", single_line=False))]
Model = Annotated[str | None, BeforeValidator(_optional(_string_checker("a model name")))]
EventType = Annotated[str, BeforeValidator(_string_checker("an event type"))]
OptionalEventType = Annotated[str | None, BeforeValidator(_optional(_string_checker("an event type")))]
OptionalEventData = Annotated[str | None, BeforeValidator(_optional(_string_checker("a data line")))]
HeaderName = Annotated[str, BeforeValidator(_v_header_name)]
HeaderValue = Annotated[str, BeforeValidator(_v_header_value)]
Headers = Annotated[
    dict[HeaderName, HeaderValue],
    BeforeValidator(_v_mapping("a mapping of header names to values", secret=True)),
]
LabelName = Annotated[str, BeforeValidator(_v_label_name)]
LabelValue = Annotated[str, BeforeValidator(_string_checker("a non-empty string label value"))]
Labels = Annotated[dict[LabelName, LabelValue], BeforeValidator(_v_mapping("a mapping of label names to values"))]
EventTypes = Annotated[list[EventType], BeforeValidator(_v_list("a list of event types"))]
Urls = Annotated[list[Url], BeforeValidator(_v_list("a list of http or https URLs"))]
Body = Annotated[dict[str, Any] | str | None, BeforeValidator(_v_body)]
ModuleName = Annotated[str, BeforeValidator(_v_name)]
OptionalModuleName = Annotated[str | None, BeforeValidator(_optional(_v_name))]
AllowedTarget = Annotated[str, BeforeValidator(lambda value: _v_allowed_target(value))]
AllowedTargets = Annotated[
    list[AllowedTarget], BeforeValidator(_v_list("a list of URL prefixes or regular expressions starting with ^"))
]


# ---- where /probe may go --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TargetRule:
    """One `allowed_targets` entry: a regular expression (starting with ^) that the whole URL must match, or a URL
    prefix compared part by part — the same scheme, host and port, and a path under the prefix's path — so that
    `https://api.example.com` never admits `https://api.example.com.evil.net/` or `https://x@evil.net/`."""

    pattern: re.Pattern[str] | None = None
    scheme: str = ""
    host: str = ""
    port: int | None = None
    path: str = ""

    def allows(self, url: str) -> bool:
        if self.pattern is not None:
            return self.pattern.fullmatch(url) is not None
        parts = _url_parts(url)
        if parts is None or parts[:3] != (self.scheme, self.host, self.port):
            return False
        path = parts[3]
        return path == self.path or path.startswith(self.path if self.path.endswith("/") else self.path + "/")


def _url_parts(url: str) -> tuple[str, str, int | None, str] | None:
    try:
        split = urlsplit(url)
        port = split.port or {"http": 80, "https": 443}.get(split.scheme.lower())
    except ValueError:
        return None
    if split.scheme.lower() not in ("http", "https") or not split.hostname or split.username or split.password:
        return None
    return split.scheme.lower(), split.hostname.lower(), port, split.path or "/"


def is_probe_url(url: str) -> bool:
    """Whether /probe can take this as a target: http or https, a host, no user info."""
    return _url_parts(url) is not None


@functools.lru_cache(maxsize=256)
def _target_rules(entries: tuple[str, ...]) -> tuple[_TargetRule, ...]:
    rules = []
    for entry in entries:
        if entry.startswith("^"):
            rules.append(_TargetRule(pattern=re.compile(entry)))
        else:
            scheme, host, port, path = _url_parts(entry)  # validated by _v_allowed_target
            rules.append(_TargetRule(scheme=scheme, host=host, port=port, path=path))
    return tuple(rules)


def _v_allowed_target(value: Any) -> str:
    if isinstance(value, str) and value.startswith("^"):
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"expected a regular expression, got {_describe(value)} ({err})") from None
        return value
    if not isinstance(value, str) or _url_parts(value) is None:
        raise ValueError(
            f"expected an http or https URL prefix without user info, or a regular expression starting with ^, "
            f"got {_describe(value)}"
        )
    return value


# ---- the schema -----------------------------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=False)


class ExpectConfig(_Section):
    """What a healthy stream looks like."""

    ttft_threshold: Duration = Field(DEFAULT_TTFT_THRESHOLD, description="first token later than this alerts")
    min_duration: OptionalDuration = Field(None, description="a stream ending sooner is 'too_short'")
    min_events: OptionalPositiveInt = Field(None, description="fewer token events is 'too_few_events'")


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
    headers: Headers = Field(default_factory=dict, repr=False, description="merged under each target's headers")
    labels: Labels = Field(default_factory=dict, description="merged under each target's labels")


# target fields that fall back to the same-named field of `defaults`
_INHERITED = (
    "dialect", "interval", "timeout", "idle_timeout", "proxy_idle_timeout", "prompt", "verify_tls", "max_event_bytes",
    "max_stream_bytes", "max_events",
)
_INHERITED_EXPECT = ("ttft_threshold", "min_duration", "min_events")


class _ProbeSettings(_Section):
    """How to probe and what a healthy stream looks like: what a target and a module (a template) both carry."""

    dialect: Dialect = DEFAULT_DIALECT
    timeout: Duration = DEFAULT_TIMEOUT
    idle_timeout: Duration = DEFAULT_IDLE_TIMEOUT
    proxy_idle_timeout: Duration = DEFAULT_PROXY_IDLE_TIMEOUT
    prompt: Prompt = DEFAULT_PROMPT
    model: Model = None
    method: Method = None
    headers: Headers = Field(default_factory=dict, repr=False)  # repr=False: values may be API keys
    body: Body = None
    expect: ExpectConfig = Field(default_factory=ExpectConfig)
    verify_tls: Flag = True
    heartbeat_events: EventTypes = Field(default_factory=list, description="generic dialect only")
    terminal_event: OptionalEventType = Field(None, description="generic dialect only")
    terminal_data: OptionalEventData = Field(None, description="generic dialect only")
    error_event: OptionalEventType = Field(None, description="generic dialect only: this event type is an error")
    max_event_bytes: Size = DEFAULT_MAX_EVENT_BYTES
    max_stream_bytes: Size = Field(DEFAULT_MAX_STREAM_BYTES, description="body bytes; more fails as too_many_bytes")
    max_events: PositiveInt = Field(DEFAULT_MAX_EVENTS, description="events and comments; more: too_many_events")

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
    interval: Duration = DEFAULT_INTERVAL
    labels: Labels = Field(default_factory=dict, description="extra labels on this target's alerts")


class SchedulerConfig(_Section):
    max_concurrent: PositiveInt = Field(DEFAULT_MAX_CONCURRENT, description="global cap on concurrent streams")
    jitter: JitterDuration = Field(DEFAULT_JITTER, description="random delay of up to this much added to each run")


class ServerConfig(_Section):
    listen: Listen = Field(DEFAULT_LISTEN, description="HOST:PORT of the /metrics server; [::]:9108 for IPv6")
    external_url: OptionalUrl = Field(None, description="base URL of this monitor for links (alert generatorURL)")
    max_concurrent_probes: PositiveInt = Field(
        DEFAULT_MAX_CONCURRENT_PROBES, description="/probe requests running at once; more are answered 503"
    )

    @property
    def host(self) -> str:
        host = self.listen.rpartition(":")[0]
        return host[1:-1] if host.startswith("[") else host

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class AlertmanagerConfig(_Section):
    urls: Urls = Field(default_factory=list, description="Alertmanager base URLs; empty: no direct push")
    resend_interval: Duration = DEFAULT_RESEND_INTERVAL
    timeout: Duration = DEFAULT_ALERTMANAGER_TIMEOUT
    fire_after: PositiveInt = Field(1, description="consecutive bad runs before an alert fires")
    resolve_after: PositiveInt = Field(1, description="consecutive good runs before it resolves")
    labels: Labels = Field(default_factory=dict, description="extra labels on every alert")
    runbook_base_url: OptionalUrl = None


class MonitorConfig(_Section):
    """The whole configuration. Build it with `load_config`; `source` is the file it came from.

    (A plain model: pydantic validates a BaseSettings subclass through its __init__, which would read os.environ
    again and drop the validation context. `MonitorSettings` is the BaseSettings twin the sources read.)
    """

    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig)
    modules: dict[ModuleName, ModuleConfig] = Field(default_factory=dict)
    targets: list[TargetConfig] = Field(default_factory=list)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    alertmanager: AlertmanagerConfig = Field(default_factory=AlertmanagerConfig)

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


# ---- reading the YAML -----------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars: only true/false are booleans (no yes/no/on/off), no sexagesimal
    (1:30) or octal (0755) numbers, no timestamps: what is not clearly a number, boolean or null stays a string."""

    yaml_implicit_resolvers: dict = {}


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])


@dataclass
class _Document:
    data: dict[str, Any]
    lines: dict[Loc, int] = field(default_factory=dict)  # field path -> line where it is written (1-based)
    problems: list[_Problem] = field(default_factory=list)


def _walk(node: yaml.Node, loc: Loc, doc: _Document, seen: set[int]) -> None:
    """Record where each path is written and report keys written twice (PyYAML silently keeps the last)."""
    if id(node) in seen:  # an alias: walked already (and aliases can nest exponentially)
        return
    seen.add(id(node))
    doc.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            child = (*loc, key)
            if key in first_line:
                doc.problems.append(
                    _Problem(child, f"expected each key once, got {key!r} again (lines {first_line[key]} and {line})")
                )
            else:
                first_line[key] = line
                doc.lines.setdefault(child, line)
            _walk(value_node, child, doc, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*loc, i), doc, seen)


def _yaml_error_message(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        problem = err.problem or "unknown problem"
        if err.context:
            where = f" at line {err.context_mark.line + 1}" if err.context_mark is not None else ""
            if problem.startswith("but "):  # "expected a single document in the stream ..., but found another"
                problem = f"{err.context}{where}, {problem}"
            else:
                problem = f"{problem} ({err.context}{where})"
        return f"line {mark.line + 1}, column {mark.column + 1}: invalid YAML: {problem}"
    return f"invalid YAML: {err}"


def _parse_yaml(text: str) -> _Document:
    """YAML text -> _Document; raises ConfigError-ready messages (without file name) as ValueError."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ValueError(
                "expected a mapping with the sections defaults, targets, scheduler, server, alertmanager, "
                "got an empty file"
            )
        doc = _Document(data={})
        _walk(node, (), doc, set())
        data = loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ValueError(_yaml_error_message(err)) from None
    except RecursionError:
        raise ValueError("invalid YAML: structures nested too deeply") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ValueError(
            "expected a mapping with the sections defaults, targets, scheduler, server, alertmanager "
            f"at the top level, got {_describe(data)}"
        )
    doc.data = data
    return doc


class _YamlSource(YamlConfigSettingsSource):
    """pydantic-settings' YAML source, with strict parsing and error messages that say where and what."""

    def __init__(self, settings_cls: type[BaseSettings], yaml_file: Path):
        self.document: _Document | None = None
        super().__init__(settings_cls, yaml_file=yaml_file)

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        try:
            raw = file_path.read_bytes()
        except OSError as err:
            reason = err.strerror or str(err)
            raise ValueError(f"expected a readable configuration file, but reading it failed: {reason}") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ValueError(f"expected UTF-8 text, got an invalid byte at offset {err.start}") from None
        self.document = _parse_yaml(text)
        return self.document.data


def _read_document(path: Path) -> _Document:
    if not path.exists():
        raise ValueError("expected a readable configuration file, but it does not exist")
    if path.is_dir():
        raise ValueError("expected a configuration file, got a directory")
    source = _YamlSource(MonitorSettings, path)
    if source.document is None:  # pydantic-settings skipped the file (not a regular file)
        raise ValueError("expected a regular configuration file, got something else")
    source.document.data = source()  # what pydantic-settings hands to the model
    return source.document


# ---- the environment ------------------------------------------------------------------------------------------------


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


def _json_kind(tp: Any) -> str | None:
    """'object' or 'array' when an environment variable for `tp` must hold JSON; 'maybe' for a union that takes
    JSON or a plain string; None for a scalar."""
    tp = _strip_type(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return "maybe" if any(_json_kind(a) for a in typing.get_args(tp)) else None
    if _is_model(tp) or typing.get_origin(tp) is dict:
        return "object"
    if typing.get_origin(tp) is list:
        return "array"
    return None


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


@dataclass
class _Overrides:
    data: dict[str, Any] = field(default_factory=dict)  # from pydantic-settings' env source
    by_index: list[tuple[str, Loc, Any]] = field(default_factory=list)  # SSE_MONITOR_TARGETS__<i>__...
    env_vars: dict[Loc, str] = field(default_factory=dict)  # field path -> variable that set it
    problems: list[_Problem] = field(default_factory=list)


def _environment_overrides(environ: Mapping[str, str]) -> _Overrides:
    """Check SSE_MONITOR_* variables, then read them with pydantic-settings (targets by index: here)."""
    out = _Overrides()
    passed: dict[str, str] = {}
    sections = set(MonitorConfig.model_fields)
    for name, value in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split(ENV_NESTED_DELIMITER)
        if parts[0] not in sections:
            continue  # not configuration (e.g. SSE_MONITOR_LOG_LEVEL for the command line)
        loc: Loc = tuple(parts)
        indexed = parts[0] == "targets" and len(parts) > 1
        if indexed:
            if not parts[1].isdigit() or len(parts) < 3:
                out.problems.append(
                    _Problem(("targets",), "expected SSE_MONITOR_TARGETS__<index>__<field>, e.g. "
                             "SSE_MONITOR_TARGETS__0__URL", name)
                )
                continue
            loc = ("targets", int(parts[1]), *parts[2:])
        kind = _json_kind(_type_at(loc)) if value != "null" else None
        decoded: Any = value
        if kind is not None:
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = None
            if kind == "maybe":
                decoded = decoded if isinstance(decoded, dict) else value
            elif not isinstance(decoded, dict if kind == "object" else list):
                example = '{"key": "value"}' if kind == "object" else '["a", "b"]'
                out.problems.append(_Problem(loc, f"expected a JSON {kind} such as {example}", name))
                continue
        _record_env_var(out.env_vars, loc, None if value == "null" else decoded, name)
        if indexed:
            out.by_index.append((name, loc, None if value == "null" else decoded))
        else:
            passed[name] = value
    try:
        out.data = _EnvSource(MonitorSettings, passed)()
    except SettingsError as err:  # not expected after the checks above
        out.problems.append(_Problem((), f"expected valid {ENV_PREFIX}* variables, got: {err}"))
    return out


def _record_env_var(env_vars: dict[Loc, str], loc: Loc, value: Any, name: str) -> None:
    """Remember which variable set which path, so problems there name it. A JSON object is merged into what the
    file has, so only the keys it carries are the variable's; anything else replaces the whole value."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _record_env_var(env_vars, (*loc, str(key)), item, name)
    else:
        env_vars[loc] = name


def _merge(base: Any, override: Any) -> Any:
    """Deep-merge `override` over `base`; keys match case-insensitively (variable names are lower-cased)."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    out = dict(base)
    by_lower = {k.lower(): k for k in base if isinstance(k, str)}
    for key, value in override.items():
        key = by_lower.get(key.lower(), key) if isinstance(key, str) else key
        out[key] = _merge(out[key], value) if key in out else value
    return out


def _apply_by_index(data: dict[str, Any], overrides: _Overrides) -> None:
    for name, loc, value in overrides.by_index:
        targets = data.get("targets")
        index = loc[1]
        if not isinstance(targets, list) or index >= len(targets):
            count = len(targets) if isinstance(targets, list) else 0
            out_of = (
                "the index of an existing target, but there are none"
                if count == 0
                else "index 0, the only target"
                if count == 1
                else f"the index of an existing target, 0 to {count - 1}"
            )
            overrides.problems.append(_Problem(("targets", index), f"expected {out_of}", name))
            continue
        nested: Any = value
        for key in reversed(loc[2:]):
            nested = {key: nested}
        data["targets"] = targets = list(targets)  # leave the file's data as read
        targets[index] = _merge(targets[index], nested)


# ---- pydantic errors -> messages ------------------------------------------------------------------------------------

_REQUIRED = {
    "name": NAME_EXPECTED,
    "url": URL_EXPECTED,
}


def _keys_in_order(model: type[BaseModel]) -> list[str]:
    """A section's keys as a reader expects them: the section's own first (a target's name and url), then those it
    shares with others (the probe settings)."""
    own = [key for key in model.__annotations__ if key in model.model_fields]
    return own + [key for key in model.model_fields if key not in own]


def _problem_from_pydantic(error: Mapping[str, Any]) -> _Problem:
    loc: Loc = tuple(part for part in error["loc"] if part != "[key]")
    kind = error["type"]
    secret = "headers" in loc
    value = error.get("input")
    if kind == "value_error":
        return _Problem(loc, str(error["ctx"]["error"]))
    if kind == "missing":
        expected = _REQUIRED.get(str(loc[-1]), "expected a value")
        return _Problem(loc, f"{expected} (this field is required)")
    if kind == "extra_forbidden":
        model = _strip_type(_type_at(loc[:-1]))
        known = _keys_in_order(model) if _is_model(model) else []
        key = str(loc[-1])
        close = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return _Problem(loc, f"unknown key, {hint}expected one of: {', '.join(known)}")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return _Problem(loc, f"expected a mapping, got {_describe(value, secret)}")
    if kind == "list_type":
        what = "a list of targets (use [] for none)" if loc == ("targets",) else "a list"
        return _Problem(loc, f"expected {what}, got {_describe(value, secret)}")
    if kind == "string_type":
        return _Problem(loc, f"expected a string, got {_describe(value, secret)}")
    return _Problem(loc, f"expected a valid value, got one that is not: {error['msg']}")


# ---- rules across fields --------------------------------------------------------------------------------------------


@dataclass
class _Effective:
    value: Any
    where: str  # "from defaults.timeout", "the built-in default", ...
    own: bool  # set at the level being checked (the target, or `defaults` when checking defaults)


def _setting(
    target: Mapping[str, Any] | None,
    target_loc: Loc,
    defaults: Mapping[str, Any],
    key: str,
    parse: Callable[[Any], Any],
    builtin: Any,
    target_key: tuple[str, ...] | None = None,
) -> _Effective | None:
    """One setting as a target (or, with target=None, `defaults`) ends up with; None when unparsable (that is
    reported by field validation)."""
    target_key = target_key or (key,)
    holder: Any = target
    for part in target_key[:-1]:
        holder = holder.get(part) if isinstance(holder, Mapping) else None
    if isinstance(holder, Mapping) and target_key[-1] in holder:
        raw, where, own = holder[target_key[-1]], format_path((*target_loc, *target_key)), True
    elif key in defaults:
        raw, where, own = defaults[key], format_path(("defaults", key)), target is None
    else:
        return _Effective(builtin, "the built-in default", False)
    try:
        return _Effective(parse(raw), f"from {where}", own)
    except (ValueError, TypeError):
        return None


def _order_problem(
    small: _Effective | None,
    small_loc: Loc,
    small_name: str,
    large: _Effective | None,
    large_loc: Loc,
    large_name: str,
    fmt: Callable[[Any], str],
    blame_small: bool = False,
) -> list[_Problem]:
    """`small` must not exceed `large`, once defaults are applied. A conflict is reported once, where it is written:
    on the side the target (or `defaults`) sets itself — `small` first if blame_small, else `large` — naming the
    other side and where that value came from."""
    if not (small and large) or small.value is None or large.value is None or small.value <= large.value:
        return []
    if not (small.own or large.own):
        return []
    if large.own and not (blame_small and small.own):
        return [_Problem(large_loc, f"expected at least {small_name} ({fmt(small.value)}, {small.where}), "
                                    f"got {fmt(large.value)}")]
    return [_Problem(small_loc, f"expected at most {large_name} ({fmt(large.value)}, {large.where}), "
                                f"got {fmt(small.value)}")]


def _timeout_problems(target: Mapping[str, Any] | None, loc: Loc, defaults: Mapping[str, Any]) -> list[_Problem]:
    """timeout >= idle_timeout and expect.min_duration <= timeout, once defaults are applied."""
    timeout = _setting(target, loc, defaults, "timeout", _v_duration, DEFAULT_TIMEOUT)
    idle = _setting(target, loc, defaults, "idle_timeout", _v_duration, DEFAULT_IDLE_TIMEOUT)
    min_duration = _setting(
        target, loc, defaults, "min_duration", _v_optional_duration, None, ("expect", "min_duration")
    )
    level = loc if target is not None else ("defaults",)
    md_loc = (*loc, "expect", "min_duration") if target is not None else ("defaults", "min_duration")
    return _order_problem(
        idle, (*level, "idle_timeout"), "the idle timeout", timeout, (*level, "timeout"), "the timeout", _fmt_seconds
    ) + _order_problem(
        min_duration, md_loc, "the minimum stream duration", timeout, (*level, "timeout"), "the timeout", _fmt_seconds,
        blame_small=True,
    )


def _budget_problems(target: Mapping[str, Any] | None, loc: Loc, defaults: Mapping[str, Any]) -> list[_Problem]:
    """max_stream_bytes >= max_event_bytes and expect.min_events <= max_events, once defaults are applied: a stream
    budget smaller than one event would report a large event as too_many_bytes (never event_too_large), and a minimum
    of token events above the event budget could never be met."""
    level = loc if target is not None else ("defaults",)
    stream = _setting(target, loc, defaults, "max_stream_bytes", parse_size, DEFAULT_MAX_STREAM_BYTES)
    event = _setting(target, loc, defaults, "max_event_bytes", parse_size, DEFAULT_MAX_EVENT_BYTES)
    events = _setting(target, loc, defaults, "max_events", _parse_positive_int, DEFAULT_MAX_EVENTS)
    min_events = _setting(
        target, loc, defaults, "min_events", _v_optional_positive_int, None, ("expect", "min_events")
    )
    me_loc = (*loc, "expect", "min_events") if target is not None else ("defaults", "min_events")
    return _order_problem(
        event, (*level, "max_event_bytes"), "the event size limit",
        stream, (*level, "max_stream_bytes"), "the stream byte budget", _fmt_size,
    ) + _order_problem(
        min_events, me_loc, "the minimum number of token events",
        events, (*level, "max_events"), "the event budget", str, blame_small=True,
    )


def _written_in(raw: Mapping[str, Any], key: Loc) -> bool:
    holder: Any = raw
    for part in key:
        if not isinstance(holder, Mapping) or part not in holder:
            return False
        holder = holder[part]
    return True


def _with_module(target: Mapping[str, Any], module: Mapping[str, Any]) -> dict[str, Any]:
    """A target's raw settings over its module's, for the rules that span fields."""
    merged = {k: v for k, v in module.items() if k != "allowed_targets"}
    merged.update(target)
    if isinstance(module.get("expect"), Mapping) and isinstance(target.get("expect"), Mapping):
        merged["expect"] = {**module["expect"], **target["expect"]}
    return merged


def _cross_field_problems(data: Mapping[str, Any]) -> list[_Problem]:
    """Rules that span fields, checked on the raw merged data so they are reported along with field errors."""
    problems: list[_Problem] = []
    defaults = data.get("defaults")
    defaults = defaults if isinstance(defaults, Mapping) else {}
    targets = data.get("targets")
    targets = targets if isinstance(targets, list) else []

    first: dict[str, int] = {}  # unique names: the later one is the error
    for i, target in enumerate(targets):
        name = target.get("name") if isinstance(target, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in first:
            problems.append(_Problem(
                ("targets", i, "name"), f"expected a unique name, {name!r} is already used by targets[{first[name]}]"
            ))
        else:
            first[name] = i

    header_maps: list[tuple[Loc, Any]] = [(("defaults", "headers"), defaults.get("headers"))]
    header_maps += [
        (("targets", i, "headers"), t.get("headers")) for i, t in enumerate(targets) if isinstance(t, Mapping)
    ]
    for loc, headers in header_maps:  # header names are case-insensitive: one spelling per mapping
        if not isinstance(headers, Mapping):
            continue
        seen: dict[str, str] = {}
        for header in headers:
            if not isinstance(header, str):
                continue
            if header.lower() in seen:
                problems.append(_Problem(
                    (*loc, header),
                    f"expected each header once (names are case-insensitive), {seen[header.lower()]!r} is already set",
                ))
            else:
                seen[header.lower()] = header

    alertmanager = data.get("alertmanager")
    urls = alertmanager.get("urls") if isinstance(alertmanager, Mapping) else None
    if isinstance(urls, list):
        for i, url in enumerate(urls):
            if isinstance(url, str) and url in urls[:i]:
                problems.append(_Problem(
                    ("alertmanager", "urls", i),
                    f"expected each URL once, this one is already alertmanager.urls[{urls.index(url)}]",
                ))

    problems += _timeout_problems(None, (), defaults)
    problems += _budget_problems(None, (), defaults)
    modules = data.get("modules")
    modules = modules if isinstance(modules, Mapping) else {}
    checked: list[tuple[Loc, Mapping[str, Any]]] = []
    for name, module in modules.items():
        if isinstance(module, Mapping):
            checked.append((("modules", name), module))
    for i, target in enumerate(targets):
        if not isinstance(target, Mapping):
            continue
        module_name = target.get("module")
        if module_name is not None and isinstance(module_name, str) and module_name not in modules:
            known = ", ".join(map(str, modules)) or "none are configured"
            problems.append(_Problem(("targets", i, "module"), f"expected the name of a module ({known}), got "
                                                                f"{module_name!r}"))
        module = modules.get(module_name) if isinstance(module_name, str) else None
        checked.append((("targets", i), _with_module(target, module) if isinstance(module, Mapping) else target))
    for loc, target in checked:
        raw = targets[loc[1]] if loc[0] == "targets" else target
        # over a module, report only what this target writes itself: the module's own conflicts are its own
        problems += [problem for problem in _timeout_problems(target, loc, defaults) + _budget_problems(target, loc, defaults)
                     if _written_in(raw, problem.loc[len(loc):])]
        dialect = _setting(target, loc, defaults, "dialect", _v_dialect, DEFAULT_DIALECT)
        if dialect and dialect.value != GENERIC_DIALECT:
            for key in GENERIC_ONLY_FIELDS:
                if key in target:
                    problems.append(_Problem(
                        (*loc, key),
                        f"expected only with dialect {GENERIC_DIALECT}, but this target's dialect is "
                        f"{dialect.value!r}",
                    ))
    return problems


# ---- loading --------------------------------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> MonitorConfig:
    """Read, override from the environment, expand ${VAR}, validate and apply defaults. Raises ConfigError with
    every problem found."""
    environ = os.environ if environ is None else environ
    display = os.fspath(path)
    try:
        document = _read_document(Path(display).expanduser())
    except ValueError as err:
        raise ConfigError([f"{display}: {err}"]) from None

    problems = list(document.problems)
    overrides = _environment_overrides(environ)
    data = _merge(document.data, overrides.data)
    _apply_by_index(data, overrides)
    problems += overrides.problems

    config: MonitorConfig | None = None
    try:
        config = MonitorConfig.model_validate(data, context={"environ": environ})
    except ValidationError as err:
        problems += [_problem_from_pydantic(e) for e in err.errors(include_url=False)]
    problems += _cross_field_problems(data)

    if problems:
        raise ConfigError(_messages(display, problems, document, overrides))
    assert config is not None
    modules = {name: module.inherit(config.defaults) for name, module in config.modules.items()}
    targets = [
        (t.set_from(config.modules[t.module]) if t.module else t).inherit(config.defaults) for t in config.targets
    ]
    resolved = config.model_copy(update={"targets": targets, "modules": modules})
    resolved._source = Path(display)
    return resolved


def _messages(display: str, problems: list[_Problem], document: _Document, overrides: _Overrides) -> list[str]:
    def line(loc: Loc) -> float:
        """Where the problem is written (or its closest enclosing key), so messages follow the file."""
        if not loc:
            return 0
        for end in range(len(loc), 0, -1):
            if loc[:end] in document.lines:
                return document.lines[loc[:end]]
        return math.inf

    env_vars = {_fold(loc): var for loc, var in overrides.env_vars.items()}

    def env_var(problem: _Problem) -> str | None:
        if problem.env_var:
            return problem.env_var
        for end in range(len(problem.loc), 0, -1):
            var = env_vars.get(_fold(problem.loc[:end]))
            if var:
                return var
        return None

    def order(item: tuple[int, _Problem]) -> tuple[float, int]:
        index, problem = item
        if env_var(problem) and problem.loc not in document.lines:
            return math.inf, index  # a value only the environment set: after the file's problems
        return line(problem.loc), index

    ordered = sorted(enumerate(problems), key=order)
    out: list[str] = []
    for _, problem in ordered:
        where = format_path(problem.loc)
        text = f"{display}: {where}: {problem.message}" if where else f"{display}: {problem.message}"
        var = env_var(problem)
        if var:
            text += f" (from environment variable {var})"
        if text not in out:
            out.append(text)
    return out


def _fold(loc: Loc) -> Loc:
    return tuple(part.lower() if isinstance(part, str) else part for part in loc)


def check_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> int:
    """`sse-monitor check-config FILE`: print 'FILE: OK, N targets' and return 0, or every problem (stderr), 2."""
    try:
        config = load_config(path, environ)
    except ConfigError as err:
        for message in err.messages:
            print(message, file=sys.stderr)
        return 2
    count = len(config.targets)
    print(f"{os.fspath(path)}: OK, {count} target{'' if count == 1 else 's'}")
    return 0
