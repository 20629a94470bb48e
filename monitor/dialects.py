"""Streaming API dialects: how to ask for a stream, and which events are tokens, heartbeats, ends and errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from . import __version__
from .result import ProbeSpec
from .sse import Event


class Usage(NamedTuple):
    """Token counts a stream reported; None where it did not say. Output counts every generated token, reasoning
    (thinking) ones included: `reasoning_tokens` says how many of them were reasoning."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None


class Verdict(NamedTuple):
    """What one event means for the probe."""

    token: bool = False
    heartbeat: bool = False
    end: bool = False  # the stream ended properly
    error: str | None = None  # the stream ended with an error; the text says why
    usage: Usage | None = None  # token counts the event carried (a later report replaces an earlier one's)
    reasoning: bool = False  # a token of reasoning (thinking), not of the visible answer


TOKEN = Verdict(token=True)
REASONING = Verdict(token=True, reasoning=True)
TOKEN_END = Verdict(token=True, end=True)
HEARTBEAT = Verdict(heartbeat=True)
END = Verdict(end=True)
OTHER = Verdict()


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None


def _json(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _count(value: Any) -> int | None:
    """A token count as the API sent it: an integer >= 0, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def known_sum(*counts: int | None) -> int | None:
    """The sum of the counts that are known; None when none is."""
    known = [c for c in counts if c is not None]
    return sum(known) if known else None


def _openai_usage(usage: Any, input_key: str, output_key: str, details_key: str) -> Usage | None:
    """OpenAI's usage object: chat says prompt/completion_tokens, the Responses API input/output_tokens; both count
    reasoning tokens inside the output and say how many in the details."""
    if not isinstance(usage, dict):
        return None
    details = usage.get(details_key)
    reasoning = _count(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    return Usage(_count(usage.get(input_key)), _count(usage.get(output_key)), reasoning)


def _error_text(error: Any) -> str:
    """A short text for an API error object (OpenAI, Anthropic and Gemini all nest `message`)."""
    if isinstance(error, dict):
        kind = error.get("type") or error.get("status") or error.get("code")
        text = ": ".join(str(x) for x in (kind, error.get("message")) if x)
    else:
        text = str(error or "")
    return text[:300] or "error"


class Dialect:
    """Base: a dialect builds the request and classifies each dispatched event."""

    name = ""
    method = "POST"
    path = ""  # the standard endpoint path, appended when the URL has none
    default_model = ""
    ends_on_eof = False  # a clean EOF is a proper end (generic dialect without a terminal marker)
    output_cap = ""  # the body field that caps the answer's tokens; "" when the API has none

    def __init__(self, spec: ProbeSpec) -> None:
        self.spec = spec
        self.model = spec.model or self.default_model

    def url(self) -> str:
        try:
            parts = urlsplit(self.spec.url)
        except ValueError as exc:  # "Invalid IPv6 URL": a URL the probe cannot use, not a bug of ours
            raise httpx.InvalidURL(str(exc)) from None
        if parts.path in ("", "/") and self.path:
            parts = parts._replace(path=self.path.format(model=self.model))
        return urlunsplit(parts)

    def body(self) -> dict[str, Any] | None:
        return None

    def max_output_tokens(self) -> int | None:
        """The most tokens one run's answer can cost: the cap the dialect's own body sends (None: no cap is sent,
        because the API has none or the body is the user's)."""
        return self.spec.max_output_tokens if self.output_cap and self.spec.body is None else None

    def extra_headers(self) -> dict[str, str]:
        return {}

    def build_request(self) -> Request:
        spec = self.spec
        if spec.body is not None:
            content = spec.body
        else:
            body = self.body()
            content = json.dumps(body).encode() if body is not None else None
        headers = {
            "Accept": "text/event-stream",
            "Accept-Encoding": "gzip, deflate",  # what the probe can decode; lets a compressing proxy show itself
            "Cache-Control": "no-cache",
            "User-Agent": f"sse-monitor/{__version__}",
        }
        if content is not None:
            headers["Content-Type"] = "application/json"
        headers.update(self.extra_headers())
        lower = {k.lower(): k for k in headers}
        for name, value in spec.headers.items():  # the user's headers win, whatever their case
            headers.pop(lower.get(name.lower(), name), None)
            headers[name] = value
        method = spec.method or ("POST" if content is not None else self.method)
        return Request(method.upper(), self.url(), headers, content)

    def classify(self, event: Event) -> Verdict:
        raise NotImplementedError

    def _event_type(self, event: Event, obj: Any) -> str:
        """The event's type from its `event:` field, or from the JSON `type` when a proxy dropped the field."""
        if event.type != "message":
            return event.type
        return obj.get("type", "") if isinstance(obj, dict) else ""


class OpenAIChat(Dialect):
    name = "openai-chat"
    path = "/v1/chat/completions"
    default_model = "gpt-4o-mini"
    output_cap = "max_completion_tokens"

    def body(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": self.spec.max_output_tokens,
            "messages": [{"role": "user", "content": self.spec.prompt}],
        }

    def classify(self, event: Event) -> Verdict:
        data = event.data
        if data.strip() == "[DONE]":
            return END
        obj = _json(data)
        if event.type == "error":
            return Verdict(error=_error_text(obj.get("error", obj) if isinstance(obj, dict) else data))
        if not isinstance(obj, dict):
            return OTHER
        if obj.get("error"):
            return Verdict(error=_error_text(obj["error"]))
        if obj.get("usage"):  # the usage chunk (include_usage); some servers send it on every chunk
            usage = _openai_usage(obj["usage"], "prompt_tokens", "completion_tokens", "completion_tokens_details")
            return self._tokens(obj)._replace(usage=usage)
        return self._tokens(obj)

    @staticmethod
    def _tokens(obj: dict[str, Any]) -> Verdict:
        verdict = OTHER
        for choice in obj.get("choices") or ():
            delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
            if delta.get("content") or delta.get("refusal"):
                return TOKEN
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict) and (call.get("function") or {}).get("arguments"):
                    return TOKEN
            if delta.get("reasoning_content") or delta.get("reasoning"):
                verdict = REASONING
        return verdict


class OpenAIResponses(Dialect):
    name = "openai-responses"
    path = "/v1/responses"
    default_model = "gpt-4o-mini"
    TOKEN_TYPES = frozenset(
        {
            "response.output_text.delta",
            "response.reasoning_text.delta",
            "response.reasoning_summary_text.delta",
            "response.refusal.delta",
            "response.function_call_arguments.delta",
        }
    )
    REASONING_TYPES = frozenset({"response.reasoning_text.delta", "response.reasoning_summary_text.delta"})
    ERROR_TYPES = frozenset({"response.failed", "response.incomplete", "error"})

    output_cap = "max_output_tokens"

    def body(self) -> dict[str, Any]:
        return {"model": self.model, "stream": True, "max_output_tokens": self.spec.max_output_tokens,
                "input": self.spec.prompt}

    def classify(self, event: Event) -> Verdict:
        kind = event.type
        if kind in self.TOKEN_TYPES:  # the hot path: no JSON parsing
            return REASONING if kind in self.REASONING_TYPES else TOKEN
        obj = _json(event.data)
        kind = self._event_type(event, obj)
        if kind in self.TOKEN_TYPES:
            return REASONING if kind in self.REASONING_TYPES else TOKEN
        if kind == "response.completed":
            return Verdict(end=True, usage=self._usage(obj))
        if kind in self.ERROR_TYPES:  # an incomplete or failed response may still have cost tokens
            return Verdict(error=kind + ": " + self._error_detail(obj), usage=self._usage(obj))
        return OTHER

    @staticmethod
    def _usage(obj: Any) -> Usage | None:
        response = obj.get("response") if isinstance(obj, dict) else None
        usage = response.get("usage") if isinstance(response, dict) else None
        return _openai_usage(usage, "input_tokens", "output_tokens", "output_tokens_details")

    @staticmethod
    def _error_detail(obj: Any) -> str:
        if not isinstance(obj, dict):
            return "error"
        response = obj.get("response") if isinstance(obj.get("response"), dict) else {}
        if response.get("error"):
            return _error_text(response["error"])
        if response.get("incomplete_details"):
            return str(response["incomplete_details"].get("reason", "incomplete"))
        return _error_text(obj.get("error") or obj)


class Anthropic(Dialect):
    name = "anthropic"
    path = "/v1/messages"
    default_model = "claude-3-5-haiku-latest"
    API_VERSION = "2023-06-01"
    output_cap = "max_tokens"

    def body(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "max_tokens": self.spec.max_output_tokens,
            "stream": True,
            "messages": [{"role": "user", "content": self.spec.prompt}],
        }

    def extra_headers(self) -> dict[str, str]:
        return {"anthropic-version": self.API_VERSION}

    def classify(self, event: Event) -> Verdict:
        kind = event.type
        if kind == "content_block_delta":
            return self._delta(event.data)
        if kind == "message":  # the `event:` field was lost on the way: fall back to the JSON type
            kind = self._event_type(event, _json(event.data))
            if kind == "content_block_delta":
                return self._delta(event.data)
        if kind == "message_stop":
            return END
        if kind == "ping":
            return HEARTBEAT
        if kind == "error":
            obj = _json(event.data)
            return Verdict(error=_error_text(obj.get("error", obj) if isinstance(obj, dict) else event.data))
        if kind in ("message_start", "message_delta"):
            return Verdict(usage=self._usage(_json(event.data)))
        return OTHER

    @staticmethod
    def _delta(data: str) -> Verdict:
        """A token; of thinking when the delta is a thinking_delta or signature_delta. Only data that names one of
        them is parsed (the hot path stays a substring search)."""
        if "thinking_delta" not in data and "signature_delta" not in data:
            return TOKEN
        obj = _json(data)
        delta = obj.get("delta") if isinstance(obj, dict) else None
        kind = delta.get("type") if isinstance(delta, dict) else None
        return REASONING if kind in ("thinking_delta", "signature_delta") else TOKEN

    @staticmethod
    def _usage(obj: Any) -> Usage | None:
        """message_start carries the input tokens (and a first output count), message_delta the output so far.
        Thinking tokens are counted in the output, not apart."""
        if not isinstance(obj, dict):
            return None
        holder = obj.get("message") if obj.get("type") == "message_start" else obj
        usage = holder.get("usage") if isinstance(holder, dict) else None
        if not isinstance(usage, dict):
            return None
        return Usage(_count(usage.get("input_tokens")), _count(usage.get("output_tokens")))


class Gemini(Dialect):
    name = "gemini"
    path = "/v1beta/models/{model}:streamGenerateContent"
    default_model = "gemini-2.0-flash"

    def url(self) -> str:
        parts = urlsplit(super().url())
        query = parse_qsl(parts.query, keep_blank_values=True)
        if not any(k == "alt" for k, _ in query):
            query.append(("alt", "sse"))
        return urlunsplit(parts._replace(query=urlencode(query)))

    output_cap = "generationConfig.maxOutputTokens"

    def body(self) -> dict[str, Any]:
        return {"contents": [{"role": "user", "parts": [{"text": self.spec.prompt}]}],
                "generationConfig": {"maxOutputTokens": self.spec.max_output_tokens}}

    def classify(self, event: Event) -> Verdict:
        obj = _json(event.data)
        if not isinstance(obj, dict):
            return OTHER
        if obj.get("error"):
            return Verdict(error=_error_text(obj["error"]))
        text = thought = end = False
        for candidate in obj.get("candidates") or ():
            if not isinstance(candidate, dict):
                continue
            parts = (candidate.get("content") or {}).get("parts") or ()
            parts = [p for p in parts if isinstance(p, dict) and p.get("text")]
            text = text or any(not p.get("thought") for p in parts)
            thought = thought or any(p.get("thought") for p in parts)
            end = end or bool(candidate.get("finishReason"))
        return Verdict(token=text or thought, end=end, usage=self._usage(obj.get("usageMetadata")),
                       reasoning=thought and not text)

    @staticmethod
    def _usage(usage: Any) -> Usage | None:
        """usageMetadata: the answer's and the thoughts' tokens are counted apart; both are output."""
        if not isinstance(usage, dict):
            return None
        thoughts = _count(usage.get("thoughtsTokenCount"))
        output = known_sum(_count(usage.get("candidatesTokenCount")), thoughts)
        return Usage(_count(usage.get("promptTokenCount")), output, thoughts)


class Generic(Dialect):
    """Any SSE endpoint: every event is a token unless listed as a heartbeat; optional terminal and error markers."""

    name = "generic"
    method = "GET"

    def __init__(self, spec: ProbeSpec) -> None:
        super().__init__(spec)
        self.heartbeats = frozenset(spec.heartbeat_events)
        self.ends_on_eof = spec.terminal_event is None and spec.terminal_data is None

    def classify(self, event: Event) -> Verdict:
        spec = self.spec
        if event.type in self.heartbeats:
            return HEARTBEAT
        if spec.error_event is not None and event.type == spec.error_event:
            return Verdict(error=event.data[:300] or event.type)
        if (spec.terminal_event is not None and event.type == spec.terminal_event) or (
            spec.terminal_data is not None and event.data == spec.terminal_data
        ):
            return END
        return TOKEN


DIALECTS: dict[str, type[Dialect]] = {d.name: d for d in (OpenAIChat, OpenAIResponses, Anthropic, Gemini, Generic)}


def make_dialect(spec: ProbeSpec) -> Dialect:
    try:
        return DIALECTS[spec.dialect](spec)
    except KeyError:
        raise ValueError(f"unknown dialect {spec.dialect!r}; expected one of {', '.join(DIALECTS)}") from None
