"""--web.config.file (exporter-toolkit format: TLS, client certificates, bcrypt basic auth) and --web.enable-lifecycle,
against the real daemon process on loopback, with certificates made by openssl."""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
from pathlib import Path

import bcrypt
import httpx
import pytest

from conftest import ROOT, make_pki, sse_monitor
from monitor.scheduler import first_run_offset
from monitor.webconfig import BasicAuthMiddleware, WebConfigError, load_web_config
from servers import DaemonProcess, RecordingServer

PASSWORD = "correct horse battery staple"
LIFECYCLE = "--web.enable-lifecycle"


def hashed(password: str = PASSWORD, rounds: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def start(tmp_path):
    started: list[DaemonProcess] = []

    def run(web_config: str | None, *args: str, config: str | None = None, **kw) -> DaemonProcess:
        workdir = tmp_path / f"d{len(started)}"
        workdir.mkdir()
        extra = list(args)
        if web_config is not None:
            (workdir / "web.yml").write_text(web_config)
            extra += ["--web.config.file", str(workdir / "web.yml")]
        daemon = DaemonProcess(config or quiet_config(), workdir, args=extra, **kw)
        started.append(daemon)
        return daemon

    yield run
    for daemon in started:
        daemon.stop()


def quiet_name(interval: float = 3600, after: float = 600) -> str:
    """A target name whose first scheduled run is more than `after` seconds away: any run seen came from a request."""
    return next(f"quiet-{i}" for i in range(1000) if first_run_offset(f"quiet-{i}", interval) > after)


def quiet_config(url: str = "http://127.0.0.1:9/v1/chat/completions") -> str:
    return f"scheduler: {{jitter: 0s}}\ntargets:\n  - name: {quiet_name()}\n    url: {url}\n    interval: 1h\n"


def tls_block(pki: dict[str, Path], **extra: str) -> str:
    lines = [f"  cert_file: {pki['server.crt']}", f"  key_file: {pki['server.key']}"]
    lines += [f"  {key}: {value}" for key, value in extra.items()]
    return "tls_server_config:\n" + "\n".join(lines) + "\n"


def client_context(pki: dict[str, Path], cert: str | None = None, **versions: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that trusts the daemon's self-signed certificate, optionally presenting a client certificate."""
    context = ssl.create_default_context(cafile=str(pki["server.crt"]))
    if cert:
        context.load_cert_chain(pki[f"{cert}.crt"], pki[f"{cert}.key"])
    for name, version in versions.items():
        setattr(context, name, version)
    return context


def negotiated(port: int, context: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.version()


# ---- basic auth ------------------------------------------------------------------------------------------------------


ENDPOINTS = [("GET", "/"), ("GET", "/metrics"), ("GET", "/-/healthy"), ("GET", "/-/ready"), ("GET", "/api/v1/targets"),
             ("GET", "/targets/x"), ("POST", "/-/reload"), ("GET", "/probe"), ("GET", "/no-such-page")]


def test_a_wrong_password_gets_401_on_every_endpoint_and_runs_nothing(start):
    origin = RecordingServer()  # a probe would POST here: it records every request
    try:
        target = f"{origin.url}/v1/chat/completions"
        d = start(f"basic_auth_users:\n  prometheus: '{hashed()}'\n  other: '{hashed('other')}'\n", LIFECYCLE,
                  config=quiet_config(target), client={"auth": ("prometheus", PASSWORD)})
        d.config_path.write_text(quiet_config(target) + "  - name: added\n    url: http://127.0.0.1:9/\n    interval: 1h\n")
        wrong = [
            {},  # no credentials
            {"auth": ("prometheus", "wrong")},
            {"auth": ("prometheus", PASSWORD + " ")},
            {"auth": ("other", PASSWORD)},  # another user's password
            {"auth": ("nobody", PASSWORD)},
            {"headers": {"Authorization": "Bearer " + PASSWORD}},
            {"headers": {"Authorization": "Basic !!not-base64!!"}},
            {"headers": {"Authorization": "Basic " + base64.b64encode(b"prometheus").decode()}},  # no colon
        ]
        for method, path in ENDPOINTS:
            params = {"target": target, "module": "default"} if path == "/probe" else None
            for options in wrong:
                response = httpx.request(method, d.url + path, params=params, timeout=10, **options)
                assert response.status_code == 401, (method, path, options, response.text)
                assert response.headers["www-authenticate"].startswith("Basic")
        assert origin.posts == [], "a request without the right password made the daemon probe"
        assert d.sample("sse_monitor_targets") == 1, "a request without the right password reloaded the config"
        assert not [e for e in d.log_events() if e.get("event") in ("probe_finished", "config_reloaded")]
        # the right password opens everything, the health endpoints included
        assert d.get("/-/healthy").text == "Healthy\n"
        assert d.get("/metrics").status_code == 200
        assert httpx.get(d.url + "/-/ready", auth=("other", "other"), timeout=5).status_code == 200
        assert d.reload_via_http().status_code == 200
        assert d.sample("sse_monitor_targets") == 2
    finally:
        origin.close()


def test_http_reload_needs_the_lifecycle_flag_behind_auth_too(start):
    d = start(f"basic_auth_users:\n  admin: '{hashed()}'\n", client={"auth": ("admin", PASSWORD)})
    response = d.reload_via_http()
    assert (response.status_code, response.text) == (403, "Lifecycle API is not enabled.\n")
    on = start(f"basic_auth_users:\n  admin: '{hashed()}'\n", LIFECYCLE, client={"auth": ("admin", PASSWORD)})
    assert (on.reload_via_http().status_code, on.reload_via_http().text) == (200, "config reloaded\n")


def test_a_successful_bcrypt_check_is_remembered_and_a_wrong_password_never_is():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = BasicAuthMiddleware(app, {"u": hashed(rounds=6).encode()})

    async def scenario():
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://sse-monitor") as client:
            good = [(await client.get("/metrics", auth=("u", PASSWORD))).status_code for _ in range(5)]
            checks_after_good = middleware.bcrypt_checks
            bad = [(await client.get("/metrics", auth=("u", "guess"))).status_code for _ in range(3)]
            unknown = (await client.get("/metrics", auth=("x", PASSWORD))).status_code
            again = (await client.get("/metrics", auth=("u", PASSWORD))).status_code
            return good, checks_after_good, bad, unknown, again

    good, checks_after_good, bad, unknown, again = asyncio.run(scenario())
    assert good == [200] * 5 and checks_after_good == 1  # one bcrypt for five scrapes
    assert bad == [401] * 3 and unknown == 401 and again == 200
    assert middleware.bcrypt_checks == 1 + 3 + 1  # every wrong guess (and an unknown user) pays the full price


# ---- TLS -------------------------------------------------------------------------------------------------------------


def test_tls_serves_every_endpoint_and_plain_http_gets_nothing(start, pki):
    d = start(tls_block(pki), scheme="https", client={"verify": client_context(pki)})
    assert d.get("/-/healthy").text == "Healthy\n"
    assert "sse_monitor_targets" in d.metrics_text()
    started = [e for e in d.log_events() if e.get("event") == "started"]
    assert started[0]["listen"] == f"https://127.0.0.1:{d.port}"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{d.port}/metrics", timeout=5)
    assert negotiated(d.port, client_context(pki)) == "TLSv1.3"


def test_client_certificates_signed_by_the_client_ca_are_required_and_verified(start, pki):
    web = tls_block(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki["ca.crt"]))
    web += f"basic_auth_users:\n  prometheus: '{hashed()}'\n"
    d = start(web, scheme="https", client={"verify": client_context(pki, "client"), "auth": ("prometheus", PASSWORD)})
    assert d.get("/metrics").status_code == 200
    # without a certificate, or with one from a CA the daemon does not trust: no HTTP at all
    for refused in (client_context(pki), client_context(pki, "rogue-client")):
        with pytest.raises(httpx.TransportError):
            httpx.get(d.url + "/metrics", verify=refused, auth=("prometheus", PASSWORD), timeout=5)
    # a good certificate does not replace the password
    assert httpx.get(d.url + "/metrics", verify=client_context(pki, "client"), timeout=5).status_code == 401


def test_verify_client_cert_if_given_lets_a_client_without_one_in_but_not_one_with_a_bad_one(start, pki):
    web = tls_block(pki, client_auth_type="VerifyClientCertIfGiven", client_ca_file=str(pki["ca.crt"]))
    d = start(web, scheme="https", client={"verify": client_context(pki)})
    assert d.get("/metrics").status_code == 200
    assert httpx.get(d.url + "/metrics", verify=client_context(pki, "client"), timeout=5).status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(d.url + "/metrics", verify=client_context(pki, "rogue-client"), timeout=5)


def test_min_and_max_version_are_honoured(start, pki):
    only13 = start(tls_block(pki, min_version="TLS13"), scheme="https", client={"verify": client_context(pki)})
    assert negotiated(only13.port, client_context(pki)) == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        negotiated(only13.port, client_context(pki, maximum_version=ssl.TLSVersion.TLSv1_2))
    only12 = start(tls_block(pki, min_version="TLS12", max_version="TLS12"), scheme="https",
                   client={"verify": client_context(pki)})
    assert negotiated(only12.port, client_context(pki)) == "TLSv1.2"
    assert only12.get("/-/healthy").status_code == 200
    with pytest.raises(ssl.SSLError):
        negotiated(only12.port, client_context(pki, minimum_version=ssl.TLSVersion.TLSv1_3))


# ---- errors at start-up ----------------------------------------------------------------------------------------------


AUTH_TYPES = "NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"


def error_cases(pki: dict[str, Path], where: Path) -> list[tuple[str, list[str]]]:
    (where / "garbage.pem").write_text("not a certificate\n")
    cert, key, ca = pki["server.crt"], pki["server.key"], pki["ca.crt"]
    return [
        ("tls_server_config:\n  cert_file: x\n  certfile: y\n", [
            "tls_server_config.certfile: unknown key, expected one of: cert_file, key_file, client_auth_type, "
            "client_ca_file, min_version, max_version"]),
        ("tls_config: {}\n", ["tls_config: unknown key, expected one of: tls_server_config, basic_auth_users"]),
        ("rate_limit: {interval: 1s}\n", ["rate_limit: not supported by sse-monitor"]),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_allowed_sans: [a]\n",
         ["tls_server_config.client_allowed_sans: not supported by sse-monitor"]),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: Bogus\n",
         [f"tls_server_config.client_auth_type: expected one of {AUTH_TYPES}, got 'Bogus'"]),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: RequireAnyClientCert\n",
         ["tls_server_config.client_auth_type: expected RequireAndVerifyClientCert (with client_ca_file) or "
          "VerifyClientCertIfGiven, got 'RequireAnyClientCert'"]),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: TLS1.2\n",
         ["tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13, got 'TLS1.2'"]),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: TLS13\n  max_version: TLS12\n",
         ["tls_server_config.min_version: expected a version no newer than max_version (TLS12), got 'TLS13'"]),
        (f"tls_server_config:\n  cert_file: {where}/missing.crt\n  key_file: {key}\n",
         [f"tls_server_config.cert_file: expected a readable PEM certificate file, but '{where}/missing.crt' does "
          "not exist"]),
        (f"tls_server_config:\n  key_file: {key}\n",
         ["tls_server_config.cert_file: expected a file name (required when tls_server_config is set)"]),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {pki['client.key']}\n",
         ["tls_server_config.cert_file: expected a PEM certificate (chain) and key_file its PEM private key, got a "
          "pair that does not load: X509: KEY_VALUES_MISMATCH"]),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: RequireAndVerifyClientCert\n",
         ["tls_server_config.client_ca_file: expected the CA file that signs client certificates"]),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_auth_type: RequireAndVerifyClientCert\n"
         f"  client_ca_file: {where}/garbage.pem\n",
         ["tls_server_config.client_ca_file: expected a PEM file of CA certificates, got one that does not load"]),
        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_ca_file: {ca}\n",
         ["tls_server_config.client_auth_type: expected RequireAndVerifyClientCert (or VerifyClientCertIfGiven) when "
          "client_ca_file is set, got NoClientCert"]),
        ("basic_auth_users:\n  prometheus: hunter2-in-clear\n",
         ["basic_auth_users.prometheus: expected a bcrypt hash such as $2y$10$... (htpasswd -nBC 10 \"\" | tr -d "
          "':\\n'), got a string that is not one"]),
        ("basic_auth_users: [prometheus]\n",
         ["basic_auth_users: expected a mapping of user names to bcrypt hashes, got a list"]),
        ("- just a list\n", ["expected a mapping with tls_server_config and/or basic_auth_users, got a list"]),
    ]


def test_web_config_errors_stop_start_up_with_exit_2_naming_file_field_and_expectation(pki, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(quiet_config())
    for i, (text, expected) in enumerate(error_cases(pki, tmp_path)):
        web = tmp_path / f"web-{i}.yml"
        web.write_text(text)
        proc = sse_monitor("run", "--config", str(config), "--listen", "127.0.0.1:0", "--web.config.file", str(web))
        assert proc.returncode == 2, (text, proc.stderr)
        lines = proc.stderr.splitlines()
        for message in expected:
            assert any(line.startswith(f"{web}: {message}") for line in lines), (text, proc.stderr)
        assert "hunter2" not in proc.stderr  # a password written in clear is never echoed


def test_every_problem_of_a_file_is_reported_at_once_and_check_config_and_demo_agree(pki, tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {pki['server.crt']}\n  key_file: {tmp_path}/nope.key\n"
                   "  min_version: TLS9\nbasic_auth_users:\n  a: plain\nextra: 1\n")
    with pytest.raises(WebConfigError) as err:
        load_web_config(web)
    fields = [re.match(rf"{re.escape(str(web))}: (\S+):", m).group(1) for m in err.value.messages]
    assert sorted(fields) == ["basic_auth_users.a", "extra", "tls_server_config.key_file",
                              "tls_server_config.min_version"]
    config = tmp_path / "config.yaml"
    config.write_text(quiet_config())
    check = sse_monitor("check-config", str(config), "--web.config.file", str(web))
    assert check.returncode == 2 and check.stderr.splitlines() == err.value.messages
    demo = sse_monitor("demo", "--listen", "127.0.0.1:0", "--web.config.file", str(web))
    assert demo.returncode == 2 and demo.stderr.splitlines() == err.value.messages
    missing = sse_monitor("run", "--config", str(config), "--web.config.file", str(tmp_path / "absent.yml"))
    assert missing.returncode == 2
    assert missing.stderr == f"{tmp_path / 'absent.yml'}: expected a readable web configuration file, but it does not exist\n"


def test_relative_paths_are_relative_to_the_web_config_file_and_check_config_says_what_is_on(pki, tmp_path):
    web = pki["server.crt"].parent / "web-relative.yml"
    web.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                   "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
                   f"basic_auth_users:\n  p: '{hashed()}'\n")
    loaded = load_web_config(web)
    assert loaded.tls.cert_file == pki["server.crt"] and loaded.tls.client_ca_file == pki["ca.crt"]
    config = tmp_path / "config.yaml"
    config.write_text(quiet_config())
    check = sse_monitor("check-config", str(config), "--web.config.file", str(web))
    assert check.returncode == 0, check.stderr
    assert f"{web}: OK, TLS and basic auth (1 users)" in check.stdout


def test_an_empty_web_config_changes_nothing(start):
    d = start("# nothing yet\n")
    assert d.get("/-/healthy").status_code == 200


def test_the_shipped_example_uncommented_is_valid_with_certificates_beside_it(pki, tmp_path):
    example = (ROOT / "config/web-config.example.yml").read_text()
    assert load_web_config(ROOT / "config/web-config.example.yml").tls is None  # as shipped: all comments
    lines = example.splitlines()
    block = lines[lines.index("#") + 1:]  # the example follows the header's first empty comment line
    uncommented = "\n".join(line[2:] for line in block if line.startswith("# ") and not line[2:].lstrip().startswith("#"))
    for name, source in (("server.crt", "server.crt"), ("server.key", "server.key"), ("clients-ca.crt", "ca.crt")):
        (tmp_path / name).write_bytes(pki[source].read_bytes())
    (tmp_path / "web.yml").write_text(uncommented + "\n")
    loaded = load_web_config(tmp_path / "web.yml")
    assert loaded.tls.client_auth_type == "RequireAndVerifyClientCert" and list(loaded.users) == ["prometheus"]
