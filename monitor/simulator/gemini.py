"""Gemini's streamGenerateContent (alt=sse): one candidate chunk per token, the last with usageMetadata."""

from __future__ import annotations

from typing import Any

from .format import PROMPT_TOKENS, Event, Format, _text_of


GEMINI_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class Gemini(Format):
    pure_tokens = True

    def _chunk(self, text: str, n: int | None = None, thought: bool = False) -> dict[str, Any]:
        part: dict[str, Any] = {"text": text, "thought": True} if thought else {"text": text}
        candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}}
        if n is None:
            return {"candidates": [{**candidate, "index": 0}], "modelVersion": self.model}
        thoughts = self.thoughts(n)
        usage = {"promptTokenCount": PROMPT_TOKENS, "candidatesTokenCount": n - thoughts,
                 "totalTokenCount": PROMPT_TOKENS + n}
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        candidate = {**candidate, "finishReason": "STOP", "index": 0}
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": self.model}

    def timing_headers(self, ms: int, request_id: str) -> dict[str, str]:
        return {"server-timing": f"gfet4t7; dur={ms}", "x-goog-request-id": request_id}

    def output_cap(self) -> Any:
        config = self.body.get("generationConfig")
        return config.get("maxOutputTokens") if isinstance(config, dict) else None

    def token(self, i: int) -> list[Event]:
        return [(None, self._chunk(f"{i}\n", thought=self.thought(i)))]

    def end(self, n: int) -> list[Event]:
        return [(None, self._chunk("", n))]

    def error(self, n: int) -> list[Event]:
        return [(None, self.error_body(503, "The model is overloaded."))]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        kind = GEMINI_STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {"error": {"code": status, "message": message, "status": kind}}

    def whole(self, n: int) -> dict[str, Any]:
        return self._chunk(_text_of(n), n)
