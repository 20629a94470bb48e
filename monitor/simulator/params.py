"""A request's behaviour, from its query parameters or `X-Sim-<Name>` headers, and the event id it resumes after."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from typing import Any

HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")
LINE_ENDINGS = {"lf": "\n", "crlf": "\r\n", "cr": "\r"}
RESUME_FAULTS = ("none", "refuse", "restart", "gap", "duplicate", "noids")  # what a resumed stream does wrong


def _number(raw: str, kind: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not ok(value):
        raise ValueError(f"expected {expected}")
    return value


def _seconds(raw: str) -> float:
    return _number(raw, float, lambda x: x >= 0, "a number of seconds >= 0")


def _rate(raw: str) -> float:
    return _number(raw, float, lambda x: x > 0, "a number of tokens per second > 0")


def _count(raw: str) -> int:
    return _number(raw, int, lambda x: x >= 0, "an integer >= 0")


def _status(raw: str) -> int:
    return _number(raw, int, lambda x: 400 <= x <= 599, "an HTTP status from 400 to 599")


def _flag(raw: str) -> bool:
    value = {"0": False, "1": True, "false": False, "true": True}.get(raw.strip().lower())
    if value is None:
        raise ValueError("expected 0 or 1")
    return value


def _line_ending(raw: str) -> str:
    if raw.strip().lower() not in LINE_ENDINGS:
        raise ValueError("expected lf, crlf or cr")
    return LINE_ENDINGS[raw.strip().lower()]


def _resume_fault(raw: str) -> str:
    if raw.strip().lower() not in RESUME_FAULTS:
        raise ValueError(f"expected {', '.join(RESUME_FAULTS[:-1])} or {RESUME_FAULTS[-1]}")
    return raw.strip().lower()


def _header_value(raw: str) -> str:
    if not (raw.isascii() and raw.isprintable()):
        raise ValueError("expected printable ASCII (it becomes a response header)")
    return raw


def _header_map(raw: str) -> tuple[tuple[str, str], ...]:
    try:
        headers = json.loads(raw)
    except ValueError:
        headers = None
    if not isinstance(headers, dict) or not all(
            HEADER_NAME.fullmatch(k) and isinstance(v, str) and v.isascii() and v.isprintable()
            for k, v in headers.items()):
        raise ValueError("expected a JSON object of header names to printable ASCII values, "
                         'e.g. {"x-queue-time": "12"}')
    return tuple(headers.items())


def _param(default: Any, parse: Callable[[str], Any]) -> Any:
    return dataclasses.field(default=default, metadata={"parse": parse})


@dataclasses.dataclass(frozen=True)
class Params:
    """One request's behaviour, from query parameters or `X-Sim-<Name>` headers."""

    ttft: float = _param(0.2, _seconds)
    tokens: int = _param(20, _count)
    endless: bool = _param(False, _flag)
    rate: float = _param(20.0, _rate)
    pause_after: int | None = _param(None, _count)
    pause: float = _param(0.0, _seconds)
    heartbeat: float = _param(0.0, _seconds)
    drop_after: int | None = _param(None, _count)
    no_terminal: bool = _param(False, _flag)
    error_after: int | None = _param(None, _count)
    status: int | None = _param(None, _status)
    line_ending: str = _param("\n", _line_ending)
    headers_delay: float = _param(0.0, _seconds)
    content_type: str | None = _param(None, _header_value)
    gzip: bool = _param(False, _flag)
    content_length: bool = _param(False, _flag)
    x_accel_buffering: str | None = _param(None, _header_value)
    huge_line: int = _param(0, _count)
    garbage: int = _param(0, _count)
    gzip_bomb: int = _param(0, _count)
    redirect: str | None = _param(None, _header_value)
    tag: str | None = _param(None, _header_value)  # an opaque label for the truth log (--truth-log); nothing else
    ids: bool = _param(False, _flag)  # token events carry `id: <i>` (always on a resumed request, see resume_point)
    resume_fault: str = _param("none", _resume_fault)  # what a resumed request gets (see first_event)
    # the format's own timing headers (headers_delay as the server's processing time) and a request id
    server_timing: bool = _param(False, _flag)
    thinking: int = _param(0, _count)  # the first this many tokens are reasoning (thinking), not the visible answer
    response_headers: tuple[tuple[str, str], ...] = _param((), _header_map)  # extra headers, as a JSON object


class BadParam(ValueError):
    """An invalid parameter value; the message names the parameter."""


FIELDS = tuple((f, "x-sim-" + f.name.replace("_", "-"), "x-sim-" + f.name) for f in dataclasses.fields(Params))


def parse_params(query: Any, headers: Any) -> Params:
    """Parameters from the query (which wins) or the `X-Sim-*` headers; raises BadParam naming the culprit."""
    values, sim = {}, _sim_headers(headers)
    for f, dashed, plain in FIELDS:
        raw = query.get(f.name, sim.get(dashed, sim.get(plain)))
        if raw is None:
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            raise BadParam(f"invalid value {raw!r} for parameter {f.name!r}: {exc}") from None
    params = Params(**values)
    if params.pause > 0 and params.pause_after is None:
        raise BadParam("parameter 'pause_after' is required with 'pause'")
    if params.content_length and params.endless and params.drop_after is None and params.error_after is None:
        raise BadParam("parameter 'content_length' cannot buffer an endless stream (add drop_after or error_after)")
    return params


def _sim_headers(headers: Any) -> dict[str, str]:
    """The request's `X-Sim-*` headers by lower-case name, the first of each (as headers.get() finds it), read once."""
    sim: dict[str, str] = {}
    for name, value in headers.items():
        if name.startswith("x-sim-"):
            sim.setdefault(name, value)
    return sim


def resume_point(query: Any, headers: Any) -> int | None:
    """The event id a request resumes after: its `resume` query parameter, else its `Last-Event-ID` header; None when
    it has neither. Raises BadParam naming the culprit when it is not an event id (an integer >= 0)."""
    where, raw = (("parameter 'resume'", query["resume"]) if "resume" in query
                  else ("header 'Last-Event-ID'", headers.get("last-event-id")))
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise BadParam(f"invalid value {raw!r} for {where}: expected an event id (an integer >= 0)")
    return int(raw)
