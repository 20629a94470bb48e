"""Problems -> the messages printed: pydantic's errors rewritten as "expected WHAT, got WHAT", then every problem
prefixed with the file and field path, in the order of the file, naming the environment variable that set it."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from .constants import NAME_EXPECTED, URL_EXPECTED
from .errors import Loc, _describe, _Problem, format_path
from .models import _is_model, _strip_type, _type_at
from .sources import _Document, _Overrides


# ---- pydantic errors -> messages ------------------------------------------------------------------------------------

_REQUIRED = {
    "name": NAME_EXPECTED,
    "url": URL_EXPECTED,
    "after_events": "expected the number of token events after which the connection is dropped and resumed",
    "input_per_million": "expected the price of a million input tokens (a number >= 0, such as 0.15)",
    "output_per_million": "expected the price of a million output tokens (a number >= 0, such as 0.60)",
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


# ---- problems -> messages -------------------------------------------------------------------------------------------


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
