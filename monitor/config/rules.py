"""Rules across fields, checked on the raw merged data so that they are reported along with field errors:
unique names, headers and Alertmanager URLs, timeouts and budgets in order once defaults and modules are
applied, generic-only fields, known modules."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from monitor.result import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_STREAM_BYTES,
    DEFAULT_TIMEOUT,
)

from .constants import DEFAULT_DIALECT, GENERIC_DIALECT, GENERIC_ONLY_FIELDS
from .errors import Loc, _fmt_seconds, _fmt_size, _Problem, format_path
from .values import (
    _parse_positive_int,
    _v_dialect,
    _v_duration,
    _v_optional_duration,
    _v_optional_positive_int,
    parse_size,
)


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

    chains = data.get("chain_checks")
    for section, items in (("targets", targets), ("chain_checks", chains if isinstance(chains, list) else [])):
        first: dict[str, int] = {}  # unique names: the later one is the error
        for i, item in enumerate(items):
            name = item.get("name") if isinstance(item, Mapping) else None
            if not isinstance(name, str):
                continue
            if name in first:
                problems.append(_Problem(
                    (section, i, "name"), f"expected a unique name, {name!r} is already used by {section}[{first[name]}]"
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
