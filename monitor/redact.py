"""Keeping credentials out of logs, metrics and output: header values, URL parts and free text."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[REDACTED]"

# A header or query-parameter name is a credential's when one of its parts (split at - _ .) is one of these:
# x-api-key, x-goog-api-key, authorization, x-auth-token, access_token, set-cookie, X-Amz-Signature, ...
_SECRET_PARTS = frozenset(
    "authorization auth key apikey token secret password passwd passphrase pwd cookie session sessionid "
    "signature sig credential credentials bearer jwt".split()
)
_PARTS = re.compile(r"[-_.]")


@functools.lru_cache(maxsize=1024)  # the same few names (log keys, header names) come back at every probe
def is_secret_name(name: str) -> bool:
    return any(part in _SECRET_PARTS for part in _PARTS.split(name.lower()))


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if is_secret_name(k) else v) for k, v in headers.items()}


@functools.lru_cache(maxsize=4096)  # a target's URL is redacted at every run: once is enough
def redact_url(url: str) -> str:
    """The URL without a password in its userinfo and without secret query parameters (e.g. Gemini's `key=`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if is_secret_name(k) else v) for k, v in pairs], safe="[]")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def secret_values(headers: Mapping[str, str], url: str = "") -> list[str]:
    """The secret strings of a request, so free text (error bodies, exception messages) can be scrubbed of them."""
    found: list[str] = []
    for name, value in headers.items():
        if is_secret_name(name) and value:
            found.append(value)
            scheme, _, credential = value.partition(" ")
            if credential:
                found.append(credential)
    if url:
        parts = urlsplit(url)
        if parts.password:
            found.append(parts.password)
        found.extend(v for k, v in parse_qsl(parts.query) if is_secret_name(k) and v)
    # the longest first, so a token is not half-replaced through a shorter prefix of it
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
