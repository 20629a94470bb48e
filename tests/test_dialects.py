"""Each dialect builds the request its API expects and tells tokens, heartbeats, ends and errors apart."""

import json
from pathlib import Path

import pytest

from monitor.dialects import make_dialect
from monitor.result import ProbeSpec
from monitor.sse import Event, SSEDecoder

SAMPLES = Path(__file__).parent / "samples"


def run_sample(dialect_name: str, sample: str, **spec_kw):
    """Decode a recorded stream and classify each event: (token count, heartbeats, how it ended, error text)."""
    dialect = make_dialect(ProbeSpec(url="http://h", dialect=dialect_name, **spec_kw))
    tokens = heartbeats = 0
    for item in SSEDecoder().feed((SAMPLES / sample).read_bytes()):
        if not isinstance(item, Event):
            continue
        verdict = dialect.classify(item)
        tokens += verdict.token
        heartbeats += verdict.heartbeat
        if verdict.error is not None:
            return tokens, heartbeats, "error", verdict.error
        if verdict.end:
            return tokens, heartbeats, "end", None
    return tokens, heartbeats, "eof", None


@pytest.mark.parametrize(
    "dialect, sample, expected",
    [
        # the role-only first chunk is not a token; the finish and usage chunks are not either
        ("openai-chat", "openai_chat.sse", (3, 0, "end", None)),
        # reasoning text and tool-call arguments are tokens; the tool call's empty first arguments are not
        ("openai-chat", "openai_chat_tools_reasoning.sse", (3, 0, "end", None)),
        ("openai-responses", "openai_responses.sse", (3, 0, "end", None)),
        ("anthropic", "anthropic.sse", (2, 1, "end", None)),
        # gemini's last chunk carries text and the finish reason: a token and the end
        ("gemini", "gemini.sse", (3, 0, "end", None)),
    ],
)
def test_recorded_streams_classify_tokens_and_proper_end(dialect, sample, expected):
    assert run_sample(dialect, sample) == expected


@pytest.mark.parametrize(
    "dialect, sample, tokens, error_text",
    [
        ("openai-chat", "openai_chat_error.sse", 1, "server_error: The server had an error"),
        ("openai-responses", "openai_responses_incomplete.sse", 1, "response.incomplete: max_output_tokens"),
        ("anthropic", "anthropic_overloaded.sse", 1, "overloaded_error: Overloaded"),
        ("gemini", "gemini_error.sse", 1, "UNAVAILABLE: The model is overloaded"),
    ],
)
def test_recorded_error_streams_end_with_the_api_error(dialect, sample, tokens, error_text):
    got_tokens, _, how, text = run_sample(dialect, sample)
    assert (got_tokens, how) == (tokens, "error")
    assert text.startswith(error_text)


def test_anthropic_falls_back_to_json_type_when_a_proxy_drops_the_event_field():
    dialect = make_dialect(ProbeSpec(url="http://h", dialect="anthropic"))
    assert dialect.classify(Event("message", '{"type":"content_block_delta","delta":{"text":"x"}}')).token
    assert dialect.classify(Event("message", '{"type":"message_stop"}')).end


def test_openai_chat_request():
    spec = ProbeSpec(url="https://api.example.com", dialect="openai-chat", prompt="count", model="m1",
                     headers={"authorization": "Bearer k", "accept-encoding": "identity"})
    req = make_dialect(spec).build_request()
    assert (req.method, req.url) == ("POST", "https://api.example.com/v1/chat/completions")
    body = json.loads(req.content)
    assert body == {"model": "m1", "stream": True, "stream_options": {"include_usage": True},
                    "max_completion_tokens": 1024, "messages": [{"role": "user", "content": "count"}]}
    assert req.headers["Accept"] == "text/event-stream"
    # user headers win whatever their case, and replace the default rather than duplicate it
    assert req.headers["accept-encoding"] == "identity" and "Accept-Encoding" not in req.headers
    assert req.headers["authorization"] == "Bearer k"


def test_full_url_is_kept_as_given():
    req = make_dialect(ProbeSpec(url="http://h:1/proxy/v1/chat/completions?x=1")).build_request()
    assert req.url == "http://h:1/proxy/v1/chat/completions?x=1"


def test_openai_responses_request():
    req = make_dialect(ProbeSpec(url="http://h", dialect="openai-responses", prompt="p", model="m")).build_request()
    assert req.url == "http://h/v1/responses"
    assert json.loads(req.content) == {"model": "m", "stream": True, "max_output_tokens": 1024, "input": "p"}


def test_anthropic_request_carries_version_and_max_tokens():
    req = make_dialect(ProbeSpec(url="http://h", dialect="anthropic", prompt="p")).build_request()
    assert req.url == "http://h/v1/messages"
    assert req.headers["anthropic-version"] == "2023-06-01"
    body = json.loads(req.content)
    assert body["stream"] is True and body["max_tokens"] > 0 and body["messages"][0]["content"] == "p"


def test_gemini_request_path_and_alt_sse():
    req = make_dialect(ProbeSpec(url="http://h", dialect="gemini", model="gemini-x", prompt="p")).build_request()
    assert req.url == "http://h/v1beta/models/gemini-x:streamGenerateContent?alt=sse"
    assert json.loads(req.content)["contents"][0]["parts"][0]["text"] == "p"
    explicit = make_dialect(ProbeSpec(url="http://h/v1beta/models/g:streamGenerateContent?key=k", dialect="gemini"))
    assert explicit.build_request().url == "http://h/v1beta/models/g:streamGenerateContent?key=k&alt=sse"


@pytest.mark.parametrize("dialect, path", [
    ("openai-chat", ("max_completion_tokens",)),
    ("openai-responses", ("max_output_tokens",)),
    ("anthropic", ("max_tokens",)),
    ("gemini", ("generationConfig", "maxOutputTokens")),
])
def test_every_llm_dialects_body_caps_the_answer_at_max_output_tokens(dialect, path):
    dialect = make_dialect(ProbeSpec(url="http://h", dialect=dialect, max_output_tokens=77))
    value = json.loads(dialect.build_request().content)
    for key in path:
        value = value[key]
    assert value == 77 == dialect.max_output_tokens()
    assert make_dialect(ProbeSpec(url="http://h", dialect="generic")).max_output_tokens() is None  # no cap to send


def test_explicit_body_replaces_the_dialects():
    req = make_dialect(ProbeSpec(url="http://h", dialect="anthropic", body=b'{"custom": 1}')).build_request()
    assert req.content == b'{"custom": 1}'


def test_generic_is_get_without_body_and_post_with_one():
    assert make_dialect(ProbeSpec(url="http://h/s", dialect="generic")).build_request().method == "GET"
    assert make_dialect(ProbeSpec(url="http://h/s", dialect="generic", body=b"{}")).build_request().method == "POST"
    assert make_dialect(ProbeSpec(url="http://h/s", dialect="generic", method="put")).build_request().method == "PUT"


def test_generic_tokens_heartbeats_and_terminal_markers():
    spec = ProbeSpec(url="http://h", dialect="generic", heartbeat_events=("keepalive",), terminal_event="done")
    dialect = make_dialect(spec)
    assert dialect.classify(Event("message", "x")).token
    assert dialect.classify(Event("keepalive", "")).heartbeat
    assert dialect.classify(Event("done", "{}")).end
    assert not dialect.ends_on_eof
    by_data = make_dialect(ProbeSpec(url="http://h", dialect="generic", terminal_data="[DONE]"))
    assert by_data.classify(Event("message", "[DONE]")).end
    assert make_dialect(ProbeSpec(url="http://h", dialect="generic")).ends_on_eof
    with_error = make_dialect(ProbeSpec(url="http://h", dialect="generic", error_event="failure"))
    assert with_error.classify(Event("failure", "model crashed")).error == "model crashed"
    assert with_error.classify(Event("error", "x")).token  # only the configured type is an error


def test_unknown_dialect_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown dialect 'x'; expected one of openai-chat"):
        make_dialect(ProbeSpec(url="http://h", dialect="x"))
