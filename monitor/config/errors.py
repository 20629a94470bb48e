"""ConfigError, the _Problem a check reports, and how paths, values, durations and sizes are written in a
message."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


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
