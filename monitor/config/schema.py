"""The configuration file's JSON Schema, generated from the models: each value type's validator is written as the
JSON Schema pattern or alternatives that accept what it accepts, so YAML editors complete and check keys."""

from __future__ import annotations

import typing
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from . import values
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
)
from .models import DefaultsConfig, ExpectConfig, MonitorConfig, TargetConfig

SCHEMA_ID = "https://raw.githubusercontent.com/sse-monitor/sse-monitor/main/config/sse-monitor.schema.json"
SCHEMA_FILE = "config/sse-monitor.schema.json"  # the copy in the repository, relative to its root

# What the schema cannot say, check-config does (tests/test_config_schema.py lists the invalid files each one
# catches). Patterns are ECMA-262, Python and Go (RE2, Helm's values.schema.json) alike: no inline flags, so
# case-insensitive words are spelt out, and no lookaround.
LIMITS = ("Not checked by this schema, checked by `sse-monitor check-config`: rules across fields (timeouts, the "
          "stream budgets, generic-only settings, unique names and URLs, known modules), ${VAR} references (their "
          "syntax and the variables being set; a value holding ${ is checked after expansion), keys given twice, "
          "numbers that are not finite, whether a bracketed IPv6 host is an address, hostnames over 253 characters, "
          "and SSE_MONITOR_* environment overrides.")


def _ci(word: str) -> str:
    """A regular expression matching `word` in any case, without inline flags (which ECMA-262 lacks)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else ("\\" + c if c in ".-+" else c) for c in word)


def _words(*words: str) -> str:
    return "|".join(_ci(w) for w in words)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


# parse_duration drops every blank first ("1 0s" is 10 s): blanks may stand between any two characters here too
_DIGITS = r"\d(\s*\d)*"
_NUMBER = rf"({_DIGITS}(\s*\.\s*{_DIGITS})?|\.\s*{_DIGITS})"
_DURATION_TEXT = (r"^\s*(" + _NUMBER + r"|" + "".join(rf"({_NUMBER}\s*{unit}\s*)?" for unit in ("d", "h", "m", "s", r"m\s*s"))
                  + r")\s*$")
_NOT_BLANK_LINE = r"^[^\r\n\x00]*\S[^\r\n\x00]*$"
_ENV_REFERENCE = r"\$\{"
_PORT_DIGITS = r"(\d{1,4}|[0-5]\d{4}|6[0-4]\d{3}|65[0-4]\d{2}|655[0-2]\d|6553[0-5])"  # 1 to 5 digits, at most 65535
_PORT = "0*" + _PORT_DIGITS  # a URL's port may have any number of leading zeros
_HOST_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = rf"{_HOST_LABEL}(\.{_HOST_LABEL})*\.?"  # constants._HOSTNAME_RE but its 253-character limit
_IPV6 = r"\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*\]"  # the characters of one; whether they make an address is not checked
_URL = (r"^(" + _words("http", "https") + r")://([^\s\x00-\x1f\x7f/?#\[\]]*@)?(" + _IPV6
        + r"|[^\s\x00-\x1f\x7f/?#@:\[\]]+)" + rf"(:({_PORT})?)?([/?#][^\s\x00-\x1f\x7f]*)?$")


def _duration(zero: bool) -> dict[str, Any]:
    number: dict[str, Any] = {"type": "number", "minimum" if zero else "exclusiveMinimum": 0}
    # every part is optional in the pattern: `not` refuses a blank string, and with no zero allowed, one whose only
    # digits are zeros
    text = {"type": "string", "pattern": _DURATION_TEXT, "not": {"pattern": r"^\s*$" if zero else r"^[\s0.dhms]*$"}}
    return {"anyOf": [number, text], "description": DURATION_EXPECTED.removeprefix("expected ")
            + ("" if zero else ", greater than zero")}


_DURATION = _duration(zero=False)
_SIZE = {"anyOf": [{"type": "integer", "minimum": 1},
                   {"type": "string", "pattern": r"^\s*0*[1-9]\d*\s*(" + _words(*values._SIZE_UNITS) + r")?\s*$"}],
         "description": SIZE_EXPECTED.removeprefix("expected ")}
_POSITIVE_INT = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^\s*\+?0*[1-9]\d*\s*$"}]}
_FLAG = {"anyOf": [{"type": "boolean"}, {"type": "string", "pattern": r"^\s*(" + _words(*values._TRUE, *values._FALSE)
                                                                     + r")\s*$"}]}
_URL_SCHEMA = {"type": "string", "anyOf": [{"pattern": _URL}, {"pattern": _ENV_REFERENCE}],
               "description": URL_EXPECTED.removeprefix("expected ") + "; ${VAR} is expanded first"}
_NAME = {"type": "string", "pattern": TARGET_NAME_RE.pattern, "description": NAME_EXPECTED.removeprefix("expected ")}
_LINE = {"type": "string", "pattern": _NOT_BLANK_LINE}
_HEADER_NAME = {"type": "string", "pattern": HEADER_NAME_RE.pattern,
                "not": {"pattern": "^(" + _words(*COMPUTED_HEADERS) + ")$"}}
_LABEL_NAME = {"type": "string", "pattern": LABEL_NAME_RE.pattern,
               "not": {"anyOf": [{"pattern": "^__"}, {"enum": list(RESERVED_LABELS)}]}}
_ALLOWED_TARGET = {"type": "string", "anyOf": [{"pattern": r"^\^"}, {"pattern": _URL, "not": {"pattern": r"^[^/]*//[^/?#]*@"}}],
                   "description": "an http or https URL prefix without user info, or a regular expression starting "
                                  "with ^"}

# The Annotated types of the models (monitor.config.values), as JSON Schema.
TYPE_SCHEMAS: dict[Any, dict[str, Any]] = {
    values.Duration: _DURATION,
    values.OptionalDuration: _nullable(_DURATION),
    values.JitterDuration: _duration(zero=True),
    values.PositiveInt: _POSITIVE_INT,
    values.OptionalPositiveInt: _nullable(_POSITIVE_INT),
    values.Size: _SIZE,
    values.Flag: _FLAG,
    values.TargetName: _NAME,
    values.ModuleName: _NAME,
    values.OptionalModuleName: _nullable(_NAME),
    values.Dialect: {"enum": list(DIALECTS)},
    values.Method: _nullable({"type": "string", "pattern": r"^\s*(" + _words(*METHODS) + r")\s*$"}),
    values.Url: _URL_SCHEMA,
    values.OptionalUrl: _nullable(_URL_SCHEMA),
    values.Listen: {"type": "string", "pattern": rf"^\s*({_IPV6}|{_HOSTNAME}):{_PORT_DIGITS}\s*$",
                    "description": LISTEN_EXPECTED.removeprefix("expected ")},
    values.Prompt: {"type": "string", "pattern": r"\S"},
    values.Model: _nullable(_LINE),
    values.EventType: _LINE,
    values.OptionalEventType: _nullable(_LINE),
    values.OptionalEventData: _nullable(_LINE),
    values.HeaderName: _HEADER_NAME,
    values.HeaderValue: {"type": "string", "pattern": r"^[^\r\n\x00]*$"},
    values.Headers: {"type": "object", "propertyNames": _HEADER_NAME,
                     "additionalProperties": {"type": "string", "pattern": r"^[^\r\n\x00]*$"},
                     "description": "header names to values; ${VAR} in a value is expanded (keep API keys there)"},
    values.LabelName: _LABEL_NAME,
    values.LabelValue: _LINE,
    values.Labels: {"type": "object", "propertyNames": _LABEL_NAME, "additionalProperties": _LINE},
    values.EventTypes: {"type": "array", "items": _LINE},
    values.Urls: {"type": "array", "items": _URL_SCHEMA},
    values.Body: {"anyOf": [{"type": "object"}, {"type": "string"}, {"type": "null"}],
                  "description": "a mapping (sent as JSON) or a string (sent as is)"},
    values.OptionalQueryParam: _nullable({"type": "string", "pattern": values._QUERY_PARAM_RE.pattern}),
    values.OptionalRegion: _nullable(_LINE),
    values.AllowedTarget: _ALLOWED_TARGET,
    values.AllowedTargets: {"type": "array", "items": _ALLOWED_TARGET},
}


def _validator(annotated: Any) -> Any:
    """The before-validator function of an Annotated type."""
    return next(m.func for m in typing.get_args(annotated)[1:] if hasattr(m, "func"))


class _Generator(GenerateJsonSchema):
    """Pydantic's generator with each known validator replaced by its schema, and no generated field titles."""

    _by_validator = {_validator(annotated): schema for annotated, schema in TYPE_SCHEMAS.items()}

    def function_before_schema(self, schema: Any) -> dict[str, Any]:
        known = self._by_validator.get(schema["function"]["function"])
        return dict(known) if known is not None else super().function_before_schema(schema)

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def field_description(model: type, name: str) -> str | None:
    """A field's description; a field of `defaults` without its own has the one of the target's field it fills."""
    own = model.model_fields[name].description
    if own or model is not DefaultsConfig:
        return own
    for source in (TargetConfig, ExpectConfig):
        if name in source.model_fields and source.model_fields[name].description:
            return source.model_fields[name].description
    return None


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a configuration file, as `sse-monitor config-schema` prints it."""
    schema = MonitorConfig.model_json_schema(schema_generator=_Generator)
    for name, prop in schema["$defs"][DefaultsConfig.__name__]["properties"].items():
        if "description" not in prop and (description := field_description(DefaultsConfig, name)):
            prop["description"] = description
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "sse-monitor configuration",
        "description": "The configuration file of `sse-monitor run` (generated by `sse-monitor config-schema`). "
                       + LIMITS,
    }
