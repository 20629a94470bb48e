"""${VAR} and ${VAR:-default} expansion from the environment (URLs and header values)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from pydantic import ValidationInfo

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
