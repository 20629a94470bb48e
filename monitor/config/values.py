"""Single values: the duration, size, integer and boolean parsers, the field validators (each raises
ValueError("expected ..., got ...")), the Annotated types the models use, and where /probe may go
(`allowed_targets`)."""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationInfo

from .constants import (
    COMPUTED_HEADERS,
    DIALECTS,
    DURATION_EXPECTED,
    HEADER_NAME_RE,
    LABEL_NAME_RE,
    LISTEN_EXPECTED,
    METHODS,
    NAME_EXPECTED,
    RESERVED_LABELS,
    SIZE_EXPECTED,
    TARGET_NAME_RE,
    URL_EXPECTED,
    _HOSTNAME_RE,
)
from .errors import _describe
from .expand import _environ, expand_env

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


def is_http_url(url: str) -> bool:
    """An http or https URL with a host, a valid port if any, no whitespace or control characters: what a target's
    `url` must be (and what `sse-monitor probe` takes)."""
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
    if not is_http_url(expanded):
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

def _v_per_million(value: Any) -> float:
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()):  # environment variables are strings
        number = float(value)
    if number is None or not math.isfinite(number) or number < 0:
        raise ValueError(f"expected a price per million tokens (a number >= 0, such as 0.15), got {_describe(value)}")
    return float(number)


def _v_currency(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError(f"expected a currency code of three capital letters, such as USD, got {_describe(value)}")
    return value


PerMillion = Annotated[float, BeforeValidator(_v_per_million)]
Currency = Annotated[str, BeforeValidator(_v_currency)]
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
_QUERY_PARAM_RE = re.compile(r"^[A-Za-z0-9_.~-]{1,64}$")


def _v_query_param(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _QUERY_PARAM_RE.fullmatch(value):
        raise ValueError(f"expected a query parameter name of 1 to 64 letters, digits and _ . ~ -, got {_describe(value)}")
    return value


OptionalQueryParam = Annotated[str | None, BeforeValidator(_v_query_param)]
ModuleName = Annotated[str, BeforeValidator(_v_name)]
OptionalModuleName = Annotated[str | None, BeforeValidator(_optional(_v_name))]
OptionalFilePath = Annotated[str | None, BeforeValidator(_optional(_string_checker('a file path or ":memory:"')))]
OptionalRegion = Annotated[str | None, BeforeValidator(_optional(_string_checker("a region name (a label value)")))]
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
    """(scheme, host, port, path) of a URL a target may have (`is_http_url`) and without user info; None otherwise."""
    if not is_http_url(url):
        return None
    split = urlsplit(url)
    if split.username or split.password:
        return None
    port = split.port or {"http": 80, "https": 443}[split.scheme.lower()]
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
