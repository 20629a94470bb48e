"""A generic SSE stream: {"token": ...} data events, then a `done` event."""

from __future__ import annotations

from typing import Any

from .format import Event, Format, _text_of


class Generic(Format):
    pure_tokens = True

    def token(self, i: int) -> list[Event]:
        return [(None, {"token": f"{i}\n"})]

    def end(self, n: int) -> list[Event]:
        return [("done", {})]

    def error(self, n: int) -> list[Event]:
        return [("error", {"message": "simulated server error"})]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"status": status, "message": message}}

    def whole(self, n: int) -> dict[str, Any]:
        return {"text": _text_of(n), "tokens": n}
