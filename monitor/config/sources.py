"""Where the data comes from: the YAML file (strict YAML 1.2 scalars, the line of every key, keys written twice)
and the SSE_MONITOR_* environment variables, both read through pydantic-settings' sources."""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsError, YamlConfigSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

from .constants import ENV_NESTED_DELIMITER, ENV_PREFIX
from .errors import Loc, _describe, _Problem
from .models import MonitorConfig, MonitorSettings, _is_model, _strip_type, _type_at


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
