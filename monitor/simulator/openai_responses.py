"""OpenAI's Responses stream: typed events from response.created to response.completed."""

from __future__ import annotations

import itertools
from typing import Any

from .format import PROMPT_TOKENS, Event, Format, _text_of
from .openai_chat import _openai_error, _openai_timing


class OpenAIResponses(Format):
    WHERE = {"item_id": "msg_sim", "output_index": 0, "content_index": 0}  # the one text part of the one message

    def __init__(self, model: str, body: dict[str, Any]) -> None:
        super().__init__(model, body)
        self.sequence = itertools.count()

    def _event(self, kind: str, **fields: Any) -> Event:
        return (kind, {"type": kind, "sequence_number": next(self.sequence), **fields})

    def _response(self, status: str, n: int = 0, **extra: Any) -> dict[str, Any]:
        output = [self._item("completed", n)] if status == "completed" else []
        response = {"id": "resp_sim", "object": "response", "created_at": self.created, "status": status}
        return {**response, "model": self.model, "output": output, **extra}

    def _item(self, status: str, n: int | None = None) -> dict[str, Any]:
        content = [] if n is None else [self._part(n)]
        return {"id": "msg_sim", "type": "message", "status": status, "role": "assistant", "content": content}

    def _part(self, n: int) -> dict[str, Any]:
        return {"type": "output_text", "text": _text_of(n), "annotations": []}

    def _usage(self, n: int) -> dict[str, Any]:
        usage: dict[str, Any] = {"input_tokens": PROMPT_TOKENS, "output_tokens": n, "total_tokens": PROMPT_TOKENS + n}
        if self.thinking:
            usage["output_tokens_details"] = {"reasoning_tokens": self.thoughts(n)}
        return usage

    def output_cap(self) -> Any:
        return self.body.get("max_output_tokens")

    def timing_headers(self, ms: int, request_id: str) -> dict[str, str]:
        return _openai_timing(ms, request_id)

    def preamble(self, n: int) -> list[Event]:
        return [
            self._event("response.created", response=self._response("in_progress")),
            self._event("response.in_progress", response=self._response("in_progress")),
            self._event("response.output_item.added", output_index=0, item=self._item("in_progress")),
            self._event("response.content_part.added", **self.WHERE, part=self._part(0)),
        ]

    def token(self, i: int) -> list[Event]:
        if self.thought(i):
            where = {"item_id": "rs_sim", "output_index": 0, "summary_index": 0}
            return [self._event("response.reasoning_summary_text.delta", **where, delta=f"{i}\n")]
        return [self._event("response.output_text.delta", **self.WHERE, delta=f"{i}\n")]

    def end(self, n: int) -> list[Event]:
        return [
            self._event("response.output_text.done", **self.WHERE, text=_text_of(n)),
            self._event("response.content_part.done", **self.WHERE, part=self._part(n)),
            self._event("response.output_item.done", output_index=0, item=self._item("completed", n)),
            self._event("response.completed", response=self._response("completed", n, usage=self._usage(n))),
        ]

    def error(self, n: int) -> list[Event]:
        failure = {"code": "server_error", "message": "simulated server error"}
        return [self._event("response.failed", response=self._response("failed", error=failure))]

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        return _openai_error(status, message)

    def whole(self, n: int) -> dict[str, Any]:
        return self._response("completed", n, usage=self._usage(n))
