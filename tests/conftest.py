"""Shared fixtures: the project's simulator on a loopback port, free ports, and real server binaries."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# A daemon a test starts without its own data directory keeps its run history here, never in the checkout's ./data.
os.environ.setdefault("SSE_MONITOR_DATA_DIR", tempfile.mkdtemp(prefix="sse-monitor-test-data-"))


def require_binary(name: str, *candidates: str) -> str:
    """The path of a real server binary. Locally a missing one skips the test; under CI=true it fails it."""
    for candidate in (name, *candidates):
        path = shutil.which(candidate) or (candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK) else None)
        if path:
            return path
    message = f"{name} is not installed (scripts/test installs it with apt-get)"
    if IN_CI:
        pytest.fail(message + " — integration tests must not skip in CI")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s")


def sse_monitor(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real `sse-monitor` command line."""
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def probe_json(url: str, *args: str, timeout: float = 60) -> tuple[int, dict]:
    """`sse-monitor probe --json URL ARGS`: (exit status, the JSON object)."""
    proc = sse_monitor("probe", "--json", url, *args, timeout=timeout)
    assert proc.stdout.strip(), f"no output; stderr: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="session")
def simulator() -> Iterator[str]:
    """The project's simulator as its own process, as users run it. Yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "simulate", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r} {proc.stderr.read()}")
    base = line.rsplit(" ", 1)[-1].strip()
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def make_pki(where: Path) -> dict[str, Path]:
    """Real certificates made with openssl, for the daemon's own TLS (--web.config.file): a self-signed server
    certificate for 127.0.0.1 and localhost (as tests/test_probe_network.py's fixture makes one), a client CA with a
    client certificate it signed, and a second CA with a client certificate nobody trusts."""
    openssl = require_binary("openssl")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=where)

    files = {name: where / name for name in (
        "server.crt", "server.key", "ca.crt", "ca.key", "client.crt", "client.key",
        "rogue-ca.crt", "rogue-ca.key", "rogue-client.crt", "rogue-client.key")}
    run("req", "-x509", *ec, "-keyout", "server.key", "-out", "server.crt", "-days", "2", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    (where / "client.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for ca, client in (("ca", "client"), ("rogue-ca", "rogue-client")):
        run("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN={ca}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        run("req", "-new", *ec, "-keyout", f"{client}.key", "-out", f"{client}.csr", "-subj", f"/CN={client}")
        run("x509", "-req", "-in", f"{client}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{client}.crt", "-days", "2", "-extfile", "client.ext")
    return files
