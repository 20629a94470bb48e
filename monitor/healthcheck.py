"""The container's health check: `python -m monitor.healthcheck http://localhost:9108/-/healthy`.

Exit 0 when the daemon's web server answers, 1 when it does not. It is a liveness check, so it works whatever
--web.config.file says, without credentials or certificates in the image:

- a plain answer of 2xx is healthy; so is 401 (basic auth is on: the daemon's own app answered);
- when the plain request finds a TLS socket, it asks again over TLS without verifying the certificate (it only
  asks itself, on localhost); a TLS server that completes the handshake and then refuses us for want of a client
  certificate has answered too (the handshake is the daemon's event loop at work).
"""

from __future__ import annotations

import http.client
import ssl
import sys
from urllib.parse import urlsplit

HEALTHY_STATUSES = {401}  # basic auth on, no credentials here: the app answered


def _ask(url: str, timeout: float, secure: bool) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if secure else 80)
    if secure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # it asks itself: the certificate is not what is checked
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout,
                                                                       context=context)
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    try:
        conn.connect()  # over TLS: the handshake, done by the daemon's event loop
        try:
            conn.request("GET", parts.path or "/", headers={"User-Agent": "sse-monitor-healthcheck"})
            response = conn.getresponse()
        except (ConnectionError, http.client.HTTPException, ssl.SSLError) as err:
            if secure:  # the handshake was answered, then we were refused: no client certificate
                return f"TLS handshake answered, then refused without a client certificate ({err or type(err).__name__})"
            raise
        if 200 <= response.status < 300:
            return f"HTTP {response.status}"
        if response.status in HEALTHY_STATUSES:
            return f"HTTP {response.status} (basic auth is on)"
        raise RuntimeError(f"HTTP {response.status}")
    finally:
        conn.close()


def check(url: str, timeout: float = 4.0) -> str:
    """What answered, or raises with why nothing healthy did."""
    if urlsplit(url).scheme == "https":
        return _ask(url, timeout, secure=True) + " over TLS"
    try:
        return _ask(url, timeout, secure=False)
    except (http.client.BadStatusLine, ConnectionResetError) as err:  # RemoteDisconnected is both
        # a TLS server reading a plain HTTP request closes the connection: ask it over TLS
        try:
            return _ask(url, timeout, secure=True) + " over TLS"
        except Exception as second:
            raise second from err


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    url = args[0] if args else "http://localhost:9108/-/healthy"
    try:
        print(check(url))
        return 0
    except Exception as err:  # noqa: BLE001 - any failure is "unhealthy", said in one line
        print(f"unhealthy: {url}: {err or type(err).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
