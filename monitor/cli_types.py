"""Argparse types shared by the `sse-monitor` command and the canary's own command line."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a number greater than zero and finite (a float may end in `s`, for seconds)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text.removesuffix("s") if kind is float else text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if not 0 < value < math.inf:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse
