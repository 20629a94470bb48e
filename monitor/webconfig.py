"""`--web.config.file`: TLS and basic authentication for every HTTP endpoint, in the exporter-toolkit's format.

The file is the one node_exporter, blackbox_exporter and Prometheus read with `--web.config.file`::

    tls_server_config:
      cert_file: server.crt            # relative paths are relative to the web config file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # default NoClientCert
      client_ca_file: clients-ca.crt
      min_version: TLS12               # TLS10, TLS11, TLS12 (default), TLS13
      max_version: TLS13               # default TLS13
    basic_auth_users:
      prometheus: $2y$10$...           # bcrypt hashes: htpasswd -nBC 10 "" | tr -d ':\\n'

Everything is validated at start-up (the certificate and key load and match, the CA file holds certificates, every
password is a bcrypt hash); every problem reads ``FILE: FIELD.PATH: expected WHAT, got WHAT`` as in the main
configuration. The exporter-toolkit's other keys (inline `cert`/`key`/`client_ca`, `cipher_suites`,
`curve_preferences`, `client_allowed_sans`, `http_server_config`, `rate_limit`) are refused by name rather than
silently ignored.

`basic_auth_users` applies to every path of the wrapped ASGI app (health and reload endpoints too, as the
exporter-toolkit does). A bcrypt check costs ~50-100 ms of CPU at cost 10: it runs in a thread, one at a time, and a
successful check is remembered per (user, hash) so a scrape every 15 s pays it once, not on every request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import ssl
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config.errors import ConfigError, _describe

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# exporter-toolkit's names (crypto/tls ClientAuthType) -> what Python's ssl module can do
CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
TLS_FIELDS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version")
TOP_FIELDS = ("tls_server_config", "basic_auth_users")
# keys the exporter-toolkit knows and sse-monitor does not implement: named as such, never ignored
UNSUPPORTED_TOP = ("http_server_config", "rate_limit")
UNSUPPORTED_TLS = ("cert", "key", "client_ca", "cipher_suites", "curve_preferences", "prefer_server_cipher_suites",
                   "client_allowed_sans")

BCRYPT_RE = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
BCRYPT_EXPECTED = "expected a bcrypt hash such as $2y$10$... (htpasswd -nBC 10 \"\" | tr -d ':\\n')"


class WebConfigError(ConfigError):
    """An invalid web configuration file. `messages` holds every problem, each starting with the file name."""


@dataclass
class TLSSettings:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"

    def ssl_context(self) -> ssl.SSLContext:
        """The server's context. Raises ssl.SSLError / OSError on a bad file (load_web_config has checked them)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():  # TLS10/TLS11 are deprecated in Python too; the operator asked for them
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = TLS_VERSIONS[self.min_version]
            context.maximum_version = TLS_VERSIONS[self.max_version]
        if TLS_VERSIONS[self.min_version] < ssl.TLSVersion.TLSv1_2:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 refuses TLS 1.0/1.1 at the default level
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=self.client_ca_file)
        # Python's ssl cannot ask for a certificate without verifying it (Go's RequestClientCert): it does not ask
        context.verify_mode = {
            "NoClientCert": ssl.CERT_NONE,
            "RequestClientCert": ssl.CERT_NONE,
            "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
            "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
        }[self.client_auth_type]
        context.set_alpn_protocols(["http/1.1"])
        return context


@dataclass
class WebConfig:
    """A validated web configuration: TLS settings (or none) and bcrypt hashes by user name (or none)."""

    source: Path
    tls: TLSSettings | None = None
    users: dict[str, bytes] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext | None:
        return self.tls.ssl_context() if self.tls else None

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """The app behind basic authentication (every path), or the app itself when no user is configured."""
        return BasicAuthMiddleware(app, self.users) if self.users else app


# ---- loading and validating ------------------------------------------------------------------------------------------


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and validate the file, including the files it names. Raises WebConfigError with every problem."""
    path = Path(path)
    problems: list[str] = []

    def problem(where: str, message: str) -> None:
        problems.append(f"{path}: {where}: {message}" if where else f"{path}: {message}")

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WebConfigError([f"{path}: expected a readable web configuration file, but it does not exist"]) from None
    except IsADirectoryError:
        raise WebConfigError([f"{path}: expected a web configuration file, got a directory"]) from None
    except UnicodeDecodeError as err:
        raise WebConfigError([f"{path}: expected UTF-8 text, got an invalid byte at offset {err.start}"]) from None
    except OSError as err:
        raise WebConfigError([f"{path}: expected a readable web configuration file, but reading it failed: "
                              f"{err.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem_text = getattr(err, "problem", None) or err
        raise WebConfigError([f"{path}: {where}expected valid YAML, got: {problem_text}"]) from None
    if data is None:
        data = {}  # an empty file: no TLS, no authentication (as the exporter-toolkit reads it)
    if not isinstance(data, Mapping):
        raise WebConfigError([f"{path}: expected a mapping with {' and/or '.join(TOP_FIELDS)}, got {_describe(data)}"])

    for key in data:
        if key in UNSUPPORTED_TOP:
            problem(str(key), f"not supported by sse-monitor (it supports {', '.join(TOP_FIELDS)})")
        elif key not in TOP_FIELDS:
            problem(str(key), f"unknown key, expected one of: {', '.join(TOP_FIELDS)}")

    tls = _tls_settings(data.get("tls_server_config"), path, problem)
    users = _users(data.get("basic_auth_users"), problem)
    if problems:
        raise WebConfigError(problems)
    return WebConfig(source=path, tls=tls, users=users)


def _tls_settings(raw: Any, path: Path, report: Callable[[str, str], None]) -> TLSSettings | None:
    where = "tls_server_config"
    found: list[str] = []

    def problem(at: str, message: str) -> None:
        found.append(at)
        report(at, message)

    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problem(where, f"expected a mapping with cert_file and key_file, got {_describe(raw)}")
        return None
    for key in raw:
        if key in UNSUPPORTED_TLS:
            problem(f"{where}.{key}", f"not supported by sse-monitor (it supports {', '.join(TLS_FIELDS)})")
        elif key not in TLS_FIELDS:
            problem(f"{where}.{key}", f"unknown key, expected one of: {', '.join(TLS_FIELDS)}")
    if not any(raw.get(key) is not None for key in TLS_FIELDS):
        return None  # `tls_server_config: {}`: TLS off, as in the exporter-toolkit

    def string(key: str) -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            problem(f"{where}.{key}", f"expected a file name, got {_describe(value)}")
            return None
        return value

    def file(key: str, what: str) -> Path | None:
        name = string(key)
        if name is None:
            return None
        full = path.parent / Path(name).expanduser()  # relative to the web config file, as the exporter-toolkit does
        if not full.exists():
            problem(f"{where}.{key}", f"expected a readable {what}, but {str(full)!r} does not exist")
        elif not full.is_file():
            problem(f"{where}.{key}", f"expected a {what}, but {str(full)!r} is not a regular file")
        elif not os.access(full, os.R_OK):
            problem(f"{where}.{key}", f"expected a readable {what}, but {str(full)!r} cannot be read (permissions)")
        else:
            return full
        return None

    def choice(key: str, choices: Iterable[str], default: str) -> str | None:
        value = raw.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            problem(f"{where}.{key}", f"expected one of {', '.join(choices)}, got {_describe(value)}")
            return None
        return value

    cert_file = file("cert_file", "PEM certificate file")
    key_file = file("key_file", "PEM private key file")
    ca_file = file("client_ca_file", "PEM file of CA certificates")
    for key in ("cert_file", "key_file"):
        if raw.get(key) is None:
            problem(f"{where}.{key}", "expected a file name (required when tls_server_config is set)")
    auth = choice("client_auth_type", CLIENT_AUTH_TYPES, "NoClientCert")
    if raw.get("client_auth_type") == "RequireAnyClientCert":
        problem(f"{where}.client_auth_type", "expected RequireAndVerifyClientCert (with client_ca_file) or "
                "VerifyClientCertIfGiven, got 'RequireAnyClientCert': Python's TLS cannot require a client "
                "certificate without verifying it")
        auth = None
    min_version = choice("min_version", TLS_VERSIONS, "TLS12")
    max_version = choice("max_version", TLS_VERSIONS, "TLS13")
    if min_version and max_version and TLS_VERSIONS[min_version] > TLS_VERSIONS[max_version]:
        problem(f"{where}.min_version", f"expected a version no newer than max_version ({max_version}), "
                f"got {min_version!r}")
    if auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and raw.get("client_ca_file") is None:
        problem(f"{where}.client_ca_file", f"expected the CA file that signs client certificates "
                f"(client_auth_type {auth} verifies them against it)")
    if auth == "NoClientCert" and raw.get("client_ca_file") is not None:
        problem(f"{where}.client_auth_type", "expected RequireAndVerifyClientCert (or VerifyClientCertIfGiven) when "
                "client_ca_file is set, got NoClientCert (client CAs configured without a client auth policy)")

    if cert_file and key_file:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cert_file, key_file)
        except ssl.SSLError as err:
            problem(f"{where}.cert_file", f"expected a PEM certificate (chain) and key_file its PEM private key, "
                    f"got a pair that does not load: {_ssl_reason(err)}")
    if ca_file:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_verify_locations(cafile=ca_file)
            if not context.cert_store_stats()["x509"]:
                raise ssl.SSLError("no certificate in it")
        except ssl.SSLError as err:
            problem(f"{where}.client_ca_file", f"expected a PEM file of CA certificates, got one that does not "
                    f"load: {_ssl_reason(err)}")
    if found:
        return None
    assert cert_file and key_file and auth and min_version and max_version
    return TLSSettings(cert_file, key_file, auth, ca_file, min_version, max_version)


def _ssl_reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None)
    library = getattr(err, "library", None)
    if reason:
        return f"{library}: {reason}" if library else str(reason)
    return str(err.args[-1] if err.args else err)


def _users(raw: Any, problem: Callable[[str, str], None]) -> dict[str, bytes]:
    where = "basic_auth_users"
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problem(where, f"expected a mapping of user names to bcrypt hashes, got {_describe(raw)}")
        return {}
    users: dict[str, bytes] = {}
    for name, hashed in raw.items():
        if not isinstance(name, str) or not name:
            problem(f"{where}[{name!r}]", f"expected a user name (a non-empty string), got {_describe(name)}")
            continue
        at = f"{where}.{name}" if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f"{where}[{name!r}]"
        if ":" in name:
            problem(at, "expected a user name without ':' (basic authentication cannot carry one)")
            continue
        if not isinstance(hashed, str):
            got = "a string that is not one" if isinstance(hashed, str) else _describe(hashed, secret=True)
            problem(at, f"{BCRYPT_EXPECTED}, got {got}")
            continue
        match = BCRYPT_RE.fullmatch(hashed)
        if not match:  # never echoed: it may be a password written in clear
            problem(at, f"{BCRYPT_EXPECTED}, got a string that is not one")
            continue
        cost = int(match.group(1))
        if not 4 <= cost <= 31:
            problem(at, f"expected a bcrypt cost from 4 to 31, got {cost}")
            continue
        users[name] = hashed.encode("ascii")
    return users


# ---- basic authentication --------------------------------------------------------------------------------------------


class BasicAuthMiddleware:
    """ASGI middleware: every HTTP request needs `Authorization: Basic` with a configured user and its password.

    A successful bcrypt check is remembered as a keyed digest of the password per (user, hash), compared in constant
    time: memory stays bounded by the number of users, and a changed hash needs a new bcrypt check.
    """

    def __init__(self, app: ASGIApp, users: Mapping[str, bytes]) -> None:
        self.app = app
        self.users = dict(users)
        self._key = secrets.token_bytes(32)
        self._verified: dict[tuple[str, bytes], bytes] = {}
        self._lock = asyncio.Lock()
        self.bcrypt_checks = 0  # how many bcrypt computations ran (for tests and debugging)
        # the hash an unknown user is checked against, at the users' highest cost: it takes as long as a known one
        import bcrypt

        cost = max(int(BCRYPT_RE.fullmatch(h.decode()).group(1)) for h in self.users.values()) if self.users else 4
        self._decoy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        credentials = _basic_credentials(scope)
        if credentials is not None and await self._check(*credentials):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = b"Unauthorized\n"
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b'Basic realm="sse-monitor"')],
        })
        await send({"type": "http.response.body", "body": body})

    async def _check(self, user: str, password: bytes) -> bool:
        hashed = self.users.get(user)
        known = hashed is not None
        hashed = hashed if known else self._decoy
        digest = hmac.new(self._key, password, hashlib.sha256).digest()
        remembered = self._verified.get((user, hashed))
        if remembered is not None and hmac.compare_digest(remembered, digest):
            return known
        async with self._lock:  # one bcrypt at a time: a burst of bad passwords cannot take every core
            self.bcrypt_checks += 1
            ok = await asyncio.to_thread(_bcrypt_check, password, hashed)
        if ok and known:
            self._verified[(user, hashed)] = digest
        return ok and known


def _bcrypt_check(password: bytes, hashed: bytes) -> bool:
    import bcrypt

    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # e.g. a password over bcrypt's 72 bytes (bcrypt>=5 refuses instead of truncating)
        return False


def _basic_credentials(scope: Scope) -> tuple[str, bytes] | None:
    for name, value in scope.get("headers", ()):
        if name.lower() != b"authorization":
            continue
        scheme, _, encoded = value.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        user, colon, password = decoded.partition(b":")
        if not colon:
            return None
        try:
            return user.decode("utf-8"), password
        except UnicodeDecodeError:
            return None
    return None
