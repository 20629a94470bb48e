"""OpenAI's Chat Completions stream: chat.completion.chunk objects, an optional usage chunk, then [DONE]."""

from __future__ import annotations

from typing import Any

from .format import PROMPT_TOKENS, Event, Format, _text_of


def _openai_timing(ms: int, request_id: str) -> dict[str, str]:
    return {"openai-processing-ms": str(ms), "x-request-id": request_id}


def _openai_error(status: int, message: str) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "requests" if status == 429 else "invalid_request_error"
    code = "rate_limit_exceeded" if status == 429 else None
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class OpenAIChat(Format):
    pure_tokens = True

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {**self._envelope(), "choices": [choice]}

    def _envelope(self) -> dict[str, Any]:
        return {"id": "chatcmpl-sim", "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def _usage(self, n: int) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": n,
                                 "total_tokens": PROMPT_TOKENS + n}
        if self.thinking:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.thoughts(n)}
        return usage

    def preamble(self, n: int) -> list[Event]:
        return [(None, self._chunk({"role": "assistant", "content": ""}))]

    def timing_headers(self, ms: int, request_id: str) -> dict[str, str]:
        return _openai_timing(ms, request_id)

    def output_cap(self) -> Any:
        return self.body.get("max_completion_tokens", self.body.get("max_tokens"))

    def token(self, i: int) -> list[Event]:
        return [(None, self._chunk({"reasoning_content" if self.thought(i) else "content": f"{i}\n"}))]

    def end(self, n: int) -> list[Event]:
        events: list[Event] = [(None, self._chunk({}, "stop"))]
        options = self.body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            events.append((None, {**self._envelope(), "choices": [], "usage": self._usage(n)}))
        return [*events, (None, "[DONE]")]

    def error(self, n: int) -> list[Event]:
        return [(None, {"error": {"message": "simulated server error", "type": "server_error", "code": None}})]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return _openai_error(status, message)

    def whole(self, n: int) -> dict[str, Any]:
        choice = {"index": 0, "message": {"role": "assistant", "content": _text_of(n)}, "finish_reason": "stop"}
        return {**self._envelope(), "object": "chat.completion", "choices": [choice], "usage": self._usage(n)}
