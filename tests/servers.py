"""Real processes for integration tests: the sse-monitor daemon, Prometheus and Alertmanager, on loopback ports."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, free_port, require_binary, wait_for_port


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll until `predicate()` returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text format into {(sample name, labels): value}."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


class DaemonProcess:
    """`sse-monitor run --config FILE` as users start it; logs (JSON lines) kept in a file.

    `args` are more command-line options (`--web.enable-lifecycle` for POST /-/reload, `--web.config.file FILE`);
    `scheme` is https when the web config turns TLS on; `client` holds httpx options (auth=, verify=, cert=) for every
    request this object makes to the daemon."""

    def __init__(self, config_text: str, workdir: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] | list[str] = (), scheme: str = "http", client: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(config_text)
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.client = dict(client or {})
        self.log_path = workdir / "daemon.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "--config", str(self.config_path),
             "--listen", f"127.0.0.1:{self.port}", "--log-format", "json", *args],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "SSE_MONITOR_DATA_DIR": str(workdir / "data"), **(env or {})},
        )
        try:
            wait_until(lambda: self.get("/-/ready", timeout=1).status_code == 200, 20, "the daemon to be ready")
        except AssertionError:
            self.stop()
            raise AssertionError("daemon did not start:\n" + self.logs())

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, **{"timeout": 5, **self.client, **kw})

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, **{"timeout": 10, **self.client, **kw})

    def metrics_text(self) -> str:
        return self.get("/metrics").text

    def metrics(self) -> dict[tuple[str, frozenset], float]:
        return parse_metrics(self.metrics_text())

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, frozenset(labels.items())))

    def runs(self, target: str) -> float:
        """Finished runs of a target, whatever their outcome."""
        return sum(v for (name, labels), v in self.metrics().items()
                   if name == "sse_probe_runs_total" and ("target", target) in labels)

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def log_events(self) -> list[dict]:
        import json

        events = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events

    def reload_via_http(self) -> httpx.Response:
        """POST /-/reload: answered only when the daemon runs with --web.enable-lifecycle (403 otherwise)."""
        return self.post("/-/reload")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class ServerProcess:
    """A real server binary in the foreground with its own temp dir; stopped at the end."""

    def __init__(self, argv: list[str], port: int, name: str, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.port, self.workdir, self.env = name, port, workdir, env
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.argv = argv
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        # its own session, so a stuck server's workers can be killed with it, and nothing else
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                     env=self.env, start_new_session=True)
        try:
            wait_for_port(self.port, proc=self.proc, timeout=30)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {exc}\n{self.logs()}") from None

    def logs(self) -> str:
        """What the server wrote: its output and, if it keeps one in its directory, its error log."""
        self._log.flush()
        parts = [f"--- {p.name}\n{p.read_text()[-3000:]}" for p in (self.log_path, self.workdir / "error.log") if p.exists()]
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        self._log.close()


def run_on_pty(command: str, *args: str) -> tuple[int, str, str]:
    """Run `sse-monitor COMMAND ARGS` with stderr on a real pseudo-terminal: (status, stdout, what the terminal got)."""
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", command, *args], stdout=subprocess.PIPE,
                            stderr=slave, cwd=ROOT)
    os.close(slave)
    received = bytearray()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer of the slave is gone
                    break
                if not chunk:
                    break
                received += chunk
            elif proc.poll() is not None:
                break
        stdout = proc.communicate(timeout=30)[0]
    finally:
        os.close(master)
    return proc.returncode, stdout.decode(), received.decode(errors="replace")


@contextlib.contextmanager
def running_canary(*args: str) -> Iterator[str]:
    """`sse-monitor canary ARGS` as its own process; yields its host:port."""
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "canary", "--listen", "127.0.0.1:0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"canary did not start: {line!r} {proc.stderr.read()}")
    try:
        yield line.rsplit("//", 1)[-1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---- reverse proxies: the shipped configs in config/proxies/, placeholders filled in -----------------------------

PROXIES = ROOT / "config" / "proxies"


Edit = Callable[[str], str] | None  # a test's one change to a shipped config, shown in the test


def render(config: str, edit: Edit = None, **values: str) -> str:
    """A shipped config with its placeholders filled in; every placeholder must get a value, and only those."""
    text = (PROXIES / config).read_text()
    if edit is not None:
        changed = edit(text)
        assert changed != text, f"the edit changed nothing in {config}"
        text = changed
    for name, value in values.items():
        assert "{{" + name + "}}" in text, f"{config} has no placeholder {{{{{name}}}}}"
        text = text.replace("{{" + name + "}}", value)
    left = re.findall(r"\{\{\w+\}\}", text)
    assert not left, f"{config}: placeholders without a value: {left}"
    return text


Proxy = ServerProcess  # a reverse proxy under test is one of our server processes


def start_nginx(config: str, upstream: str, workdir: Path, edit: Edit = None) -> Proxy:
    binary = require_binary("nginx", "/usr/sbin/nginx")
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(render(config, edit, LISTEN=f"127.0.0.1:{port}", UPSTREAM=upstream))
    return ServerProcess([binary, "-p", f"{workdir}/", "-c", str(conf), "-g", "daemon off;"], port, "nginx", workdir)


def start_apache(config: str, upstream: str, workdir: Path, edit: Edit = None) -> Proxy:
    binary = require_binary("apache2", "/usr/sbin/apache2")
    port = free_port()
    conf = workdir / "apache2.conf"
    conf.write_text(render(config, edit, LISTEN=f"127.0.0.1:{port}", UPSTREAM=upstream))
    return ServerProcess([binary, "-d", str(workdir), "-f", str(conf), "-DFOREGROUND"], port, "apache2", workdir)


def start_caddy(config: str, upstream: str, workdir: Path, edit: Edit = None) -> Proxy:
    binary = require_binary("caddy", "/usr/bin/caddy")
    port = free_port()
    conf = workdir / "Caddyfile"
    conf.write_text(render(config, edit, LISTEN_HOST="127.0.0.1", LISTEN_PORT=str(port), UPSTREAM=upstream))
    home = {"HOME": str(workdir), "XDG_DATA_HOME": str(workdir / "data"), "XDG_CONFIG_HOME": str(workdir / "config")}
    argv = [binary, "run", "--config", str(conf), "--adapter", "caddyfile"]
    return ServerProcess(argv, port, "caddy", workdir, env={**os.environ, **home})


def start_haproxy(config: str, upstream: str, workdir: Path, edit: Edit = None) -> Proxy:
    binary = require_binary("haproxy", "/usr/sbin/haproxy")
    port = free_port()
    conf = workdir / "haproxy.cfg"
    conf.write_text(render(config, edit, LISTEN=f"127.0.0.1:{port}", UPSTREAM=upstream))
    return ServerProcess([binary, "-f", str(conf), "-db"], port, "haproxy", workdir)


def start_prometheus(config_yaml: str, workdir: Path, *flags: str) -> ServerProcess:
    """A real Prometheus with this configuration; `flags` are more options (--enable-feature=exemplar-storage)."""
    binary = require_binary("prometheus")
    port = free_port()
    (workdir / "prometheus.yml").write_text(config_yaml)
    return ServerProcess(
        [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle", "--log.level=warn", *flags],
        port, "prometheus", workdir,
    )


def start_alertmanager(config_yaml: str, workdir: Path, port: int | None = None) -> ServerProcess:
    binary = require_binary("prometheus-alertmanager", "alertmanager")
    port = port or free_port()
    (workdir / "alertmanager.yml").write_text(config_yaml)
    return ServerProcess(
        [binary, f"--config.file={workdir / 'alertmanager.yml'}", f"--storage.path={workdir / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
        port, "alertmanager", workdir,
    )


def prometheus_query(prom: ServerProcess, expr: str) -> list[dict]:
    response = httpx.get(prom.url + "/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    if body.get("status") != "success":
        raise ValueError(f"query {expr!r} failed: {body}")
    return body["data"]["result"]


def tempdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


class RecordingServer:
    """A real HTTP server on loopback that records every POSTed JSON body with its arrival time.

    Serves as Alertmanager's webhook receiver, and as a stand-in Alertmanager whose failures a test can switch on
    (`fail = True` answers 503) to check retries; the real Alertmanager is used wherever its behaviour matters.
    """

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.posts: list[tuple[float, str, Any]] = []
        self.fail = False
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if recorder.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                recorder.posts.append((time.monotonic(), self.path, json.loads(body or b"null")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def alerts(self, alertname: str | None = None, status: str | None = None, **labels: str) -> list[tuple[float, dict]]:
        """(arrival time, alert) of every alert in every POST — an Alertmanager v2 list, or a webhook notification's
        `alerts` — optionally only those with this alertname, webhook status and labels."""
        out = []
        for t, _, body in list(self.posts):
            items = body["alerts"] if isinstance(body, dict) and "alerts" in body else body
            out += [(t, a) for a in items or []]
        want = {**labels, **({"alertname": alertname} if alertname else {})}
        return [(t, a) for t, a in out
                if all(a.get("labels", {}).get(k) == v for k, v in want.items())
                and (status is None or a.get("status") == status)]

    def first(self, alertname: str, status: str, **labels: str) -> tuple[float, dict] | None:
        hits = self.alerts(alertname, status, **labels)
        return hits[0] if hits else None

    def notifications(self, alertname: str, target: str, status: str) -> list[float]:
        """Arrival times of webhook notifications carrying this alert with this status."""
        return [t for t, _ in self.alerts(alertname, status, target=target)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.asynccontextmanager
async def running_daemon(config_text: str, tmp_path: Path) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """An in-process Daemon from this config, its web server on a loopback port, and a client for it."""
    import asyncio

    from monitor.config import load_config
    from monitor.daemon import Daemon

    path = tmp_path / "c.yaml"
    path.write_text(config_text)
    daemon = Daemon(load_config(path, {}), listen="127.0.0.1:0", data_dir=str(tmp_path / "data"))
    runner = asyncio.create_task(daemon.run())
    while daemon.server is None or not daemon.server.started:
        await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=daemon.base_url, timeout=30) as client:
        try:
            yield daemon, client
        finally:
            daemon.request_stop()
            await runner
