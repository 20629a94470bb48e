"""The simulator's ASGI app: one route per wire format, each request played by its parameters."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .anthropic import Anthropic
from .faults import SimulatedDrop, first_event, garbage, gzip_bomb, gzipped
from .format import Format
from .gemini import Gemini
from .generic import Generic
from .lateness import Lateness, Paced
from .openai_chat import OpenAIChat
from .openai_responses import OpenAIResponses
from .params import BadParam, Params, parse_params, resume_point
from .stream import SERVER_SEND, Plan, Stream, buffered, event_stream
from .truth import RECEIVED_KEY, Truth, TruthLog

DIALECT_PATHS: dict[str, str] = {
    "openai-chat": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/sim-1:streamGenerateContent",
    "generic": "/v1/stream",
}
DEFAULT_MODEL = "sim-1"
EVENT_STREAM = "text/event-stream; charset=utf-8"
REQUEST_IDS = itertools.count(1)  # the request ids sent with server_timing


async def respond(p: Params, fmt: Format, t0: float, truth: Truth | None = None, start: int | None = 1,
                  lateness: Lateness | None = None) -> Response:
    """The response to one request whose parameters are valid, once its headers are due; its tokens from `start`
    (None: it asked to resume, and that is refused). A `truth` record is filled by a streamed response (Stream); the
    caller completes it for any other. A paced stream's token events are counted in `lateness`."""
    if p.redirect is not None:
        return RedirectResponse(p.redirect, status_code=302)
    if p.status is not None:
        return JSONResponse(fmt.error_body(p.status, f"simulated error (HTTP {p.status})"), status_code=p.status)
    if start is None:
        return JSONResponse(fmt.error_body(409, "resumption refused (resume_fault=refuse)"), status_code=409)
    headers = {"cache-control": "no-cache", "content-type": p.content_type or EVENT_STREAM}
    if p.server_timing:
        headers.update(fmt.timing_headers(round(p.headers_delay * 1000), f"req_sim_{next(REQUEST_IDS)}"))
    headers.update(p.response_headers)
    if p.x_accel_buffering is not None:
        headers["x-accel-buffering"] = p.x_accel_buffering
    if p.garbage:
        return Stream(garbage(p.garbage), headers, truth=truth)
    if p.gzip_bomb:
        return Stream(gzip_bomb(p.gzip_bomb), {**headers, "content-encoding": "gzip"}, truth=truth)
    if "json" in headers["content-type"].lower():
        return Response(json.dumps(fmt.whole(p.tokens)), headers=headers)
    # with content_length the events are made at once, long before the response goes out: first_token stays null
    if p.content_length:
        chunks = event_stream(p, fmt, t0, instant=True, start=start)
        return await buffered(gzipped(chunks) if p.gzip else chunks, _gzip_header(headers, p.gzip), truth)
    paced = Paced(lateness) if lateness is not None else None
    chunks = event_stream(p, fmt, t0, truth=truth, start=start, paced=paced)
    plan = Plan(p, fmt, t0, start, lateness) if Plan.fits(p) else None  # the fast lane, where the connection allows
    return Stream(gzipped(chunks) if p.gzip else chunks, _gzip_header(headers, p.gzip), truth=truth, paced=paced,
                  plan=plan)


def _gzip_header(headers: dict[str, str], gzip: bool) -> dict[str, str]:
    return {**headers, "content-encoding": "gzip"} if gzip else headers


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _endpoint(format_class: type[Format], truth_log: TruthLog | None = None,
              lateness: Lateness | None = None) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        t0 = time.monotonic()
        if truth_log is not None:
            entered = time.time()
            received = request.scope.get(RECEIVED_KEY) or (None, "app")
        body = await _json_body(request)
        fmt = format_class(str(request.path_params.get("model") or body.get("model") or DEFAULT_MODEL), body)
        try:
            p = parse_params(request.query_params, request.headers)
            last = resume_point(request.query_params, request.headers)
        except BadParam as exc:
            response: Response = JSONResponse(fmt.error_body(400, str(exc)), status_code=400)
            if truth_log is not None:
                tag = request.query_params.get("tag")
                _unstreamed(truth_log.request(request.scope["path"], tag, received, entered), response)
            return response
        p = _capped(p, fmt.output_cap())
        fmt.thinking = p.thinking
        if last is not None or p.resume_fault == "noids":  # a resumed stream carries ids, unless they are the fault
            p = dataclasses.replace(p, ids=p.resume_fault != "noids")
        await asyncio.sleep(p.headers_delay)
        truth = truth_log.request(request.scope["path"], p.tag, received, entered) if truth_log is not None else None
        response = await respond(p, fmt, t0, truth, first_event(last, p.resume_fault), lateness)
        if truth is not None and not isinstance(response, Stream):
            _unstreamed(truth, response)
        return response

    return endpoint


def _capped(p: Params, cap: Any) -> Params:
    """A stream of `tokens` tokens stops at the request's output cap, as a model's answer does (an endless one
    does not: it is a hostile mode)."""
    if isinstance(cap, int) and not isinstance(cap, bool) and 0 <= cap < p.tokens and not p.endless:
        return dataclasses.replace(p, tokens=cap)
    return p


def _unstreamed(truth: Truth, response: Response) -> None:
    """A response sent whole (an error, a redirect, JSON): it goes out as soon as the endpoint returns."""
    truth.status = response.status_code
    truth.first_byte = time.time()
    truth.done()


async def _healthy(request: Request) -> Response:
    return PlainTextResponse("ok")


class _QuietDrops(logging.Filter):
    """Keeps uvicorn from logging a traceback for each connection cut on purpose: a drop, or a stream cancelled at
    the end of the graceful shutdown (uvicorn already says it cancelled them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, (SimulatedDrop, asyncio.CancelledError))


def quiet_drops() -> None:
    """Installs _QuietDrops on uvicorn's error log (once)."""
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(_QuietDrops())


class _Simulator(Starlette):
    """Starlette, passing the server's own `send` on in the scope (SERVER_SEND) for Stream's body chunks."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SERVER_SEND] = send
        await super().__call__(scope, receive, send)


def create_app(truth_log: TruthLog | None = None) -> Starlette:
    """The simulator's ASGI app: one route per wire format, a health check, and its own lateness (GET /-/lateness:
    Lateness.reading()). With a `truth_log`, every request to a format's route is recorded in it (see TruthLog)."""
    quiet_drops()
    lateness = Lateness()
    formats = {
        "openai-chat": OpenAIChat,
        "openai-responses": OpenAIResponses,
        "anthropic": Anthropic,
        "gemini": Gemini,
        "generic": Generic,
    }
    paths = {**DIALECT_PATHS, "gemini": "/v1beta/models/{model}:streamGenerateContent"}
    routes = [Route(paths[name], _endpoint(cls, truth_log, lateness), methods=["GET", "POST"], name=name)
              for name, cls in formats.items()]

    async def late(request: Request) -> Response:
        return JSONResponse(lateness.reading())

    return _Simulator(routes=[*routes, Route("/-/healthy", _healthy, methods=["GET"]),
                             Route("/-/lateness", late, methods=["GET"])])
