"""What every wire format provides: the events of each timeline step, and its JSON bodies."""

from __future__ import annotations

import time
from typing import Any

PROMPT_TOKENS = 10  # what the usage blocks claim for the prompt

Event = tuple[str | None, Any]  # (`event:` field or None, data: a dict sent as JSON, or a literal string)


def _text_of(n: int) -> str:
    return "".join(f"{i}\n" for i in range(1, n + 1))


class Format:
    """One wire format: the events of each timeline step, and its JSON bodies for errors and non-streamed replies."""

    pure_tokens = False  # token(i) depends on nothing but i, model, created and thinking: no state between calls

    def __init__(self, model: str, body: dict[str, Any]) -> None:
        self.model = model
        self.body = body
        self.created = int(time.time())
        self.thinking = 0  # tokens of reasoning before the visible answer (Params.thinking)

    def thought(self, i: int) -> bool:
        """Token i is reasoning, not answer."""
        return i <= self.thinking

    def thoughts(self, n: int) -> int:
        """Of n tokens sent, how many were reasoning."""
        return min(n, self.thinking)

    def preamble(self, n: int) -> list[Event]:
        return []

    def output_cap(self) -> Any:
        """The request's cap on the answer's tokens, as this API names it (None: none)."""
        return None

    def timing_headers(self, ms: int, request_id: str) -> dict[str, str]:
        """What this API's servers say of their own time (`ms` before the headers) and of the request."""
        return {"server-timing": f"app;dur={ms}", "x-request-id": request_id}

    def token(self, i: int) -> list[Event]:
        raise NotImplementedError

    def end(self, n: int) -> list[Event]:
        raise NotImplementedError

    def error(self, n: int) -> list[Event]:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def whole(self, n: int) -> dict[str, Any]:
        raise NotImplementedError
