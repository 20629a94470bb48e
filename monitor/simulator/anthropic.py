"""Anthropic's Messages stream: message_start, content blocks (thinking, then text), message_delta, message_stop."""

from __future__ import annotations

from typing import Any

from .format import PROMPT_TOKENS, Event, Format, _text_of


ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


TEXT_BLOCK = {"type": "text", "text": ""}
THINKING_BLOCK = {"type": "thinking", "thinking": ""}


class Anthropic(Format):
    pure_tokens = True

    def _message(self, content: list[Any], stop: str | None, n: int) -> dict[str, Any]:
        message = {"id": "msg_sim", "type": "message", "role": "assistant", "model": self.model, "content": content}
        usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": n}
        return {**message, "stop_reason": stop, "stop_sequence": None, "usage": usage}

    def preamble(self, n: int) -> list[Event]:
        return [
            ("message_start", {"type": "message_start", "message": self._message([], None, 1)}),
            self._block_start(0, THINKING_BLOCK if self.thinking else TEXT_BLOCK),
            ("ping", {"type": "ping"}),
        ]

    def _block_start(self, index: int, block: dict[str, Any]) -> Event:
        return ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})

    def _block(self, i: int) -> int:
        """The content block of token i: with thinking, the thinking block is 0 and the text block 1."""
        return 1 if self.thinking and not self.thought(i) else 0

    def timing_headers(self, ms: int, request_id: str) -> dict[str, str]:
        return {"x-envoy-upstream-service-time": str(ms), "request-id": request_id}

    def output_cap(self) -> Any:
        return self.body.get("max_tokens")

    def token(self, i: int) -> list[Event]:
        if self.thought(i):
            delta = {"type": "thinking_delta", "thinking": f"{i}\n"}
        else:
            delta = {"type": "text_delta", "text": f"{i}\n"}
        events: list[Event] = []
        if self.thinking and i == self.thinking + 1:  # the answer begins: the thinking block ends
            events = [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                      self._block_start(1, TEXT_BLOCK)]
        index = self._block(i)
        return [*events, ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})]

    def end(self, n: int) -> list[Event]:
        delta = {"stop_reason": "end_turn", "stop_sequence": None}
        return [
            ("content_block_stop", {"type": "content_block_stop", "index": self._block(n)}),
            ("message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": n}}),
            ("message_stop", {"type": "message_stop"}),
        ]

    def error(self, n: int) -> list[Event]:
        return [("error", self.error_body(529, "Overloaded"))]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def whole(self, n: int) -> dict[str, Any]:
        return self._message([{"type": "text", "text": _text_of(n)}], "end_turn", n)
