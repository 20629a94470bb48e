"""Credentials never reach output: which names are secret, and how URLs and free text are scrubbed."""

import pytest

from monitor.redact import REDACTED, is_secret_name, redact_headers, redact_url, scrub, secret_values


@pytest.mark.parametrize("name", ["Authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key",
                                  "X-Auth-Token", "access_token", "key", "Cookie", "set-cookie", "X-Amz-Signature",
                                  "client_secret", "password", "private-token"])
def test_credential_names_are_secret(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["tokens", "max_tokens", "content-type", "model", "ttft", "keyboard", "x-request-id"])
def test_ordinary_names_are_not(name):
    assert not is_secret_name(name)


def test_headers_keep_their_names_and_lose_secret_values():
    assert redact_headers({"Authorization": "Bearer sk-1", "Accept": "text/event-stream"}) == {
        "Authorization": REDACTED, "Accept": "text/event-stream"}


def test_url_loses_password_and_secret_query_values_but_keeps_the_rest():
    url = "https://user:pw@host/v1beta/models/g:streamGenerateContent?alt=sse&key=AIza123&tokens=40"
    out = redact_url(url)
    assert "pw" not in out.split("@")[0] and "AIza123" not in out
    assert "alt=sse" in out and "tokens=40" in out and out.startswith("https://user:")


def test_free_text_is_scrubbed_of_every_secret_value_including_the_bare_token():
    secrets = secret_values({"Authorization": "Bearer sk-abcdef123", "x-api-key": "k-999999"}, "http://h/?key=zzzz1")
    text = "Incorrect API key provided: sk-abcdef123; also k-999999 and zzzz1"
    out = scrub(text, secrets)
    assert "sk-abcdef123" not in out and "k-999999" not in out and "zzzz1" not in out
