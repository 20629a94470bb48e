"""The container image, read with Docker's own Dockerfile parser (no engine here), and its commands run for real."""

from __future__ import annotations

import fnmatch
import signal
import subprocess
import sys
import tomllib
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import dockerfile
import pytest

from conftest import ROOT, free_port, make_pki, wait_for_port
from monitor.config import DEFAULT_LISTEN

DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def commands() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def stages(commands: list[dockerfile.Command]) -> list[list[dockerfile.Command]]:
    out: list[list[dockerfile.Command]] = []
    for command in commands:
        if command.cmd == "FROM":
            out.append([])
        if out:
            out[-1].append(command)
    return out


def final(commands: list[dockerfile.Command], name: str) -> dockerfile.Command:
    """The instruction that takes effect in the image: the last of its kind in the last stage."""
    found = [c for c in stages(commands)[-1] if c.cmd == name]
    assert found, f"the final stage has no {name}"
    return found[-1]


def healthcheck_argv(commands: list[dockerfile.Command]) -> list[str]:
    check = final(commands, "HEALTHCHECK")
    assert check.json, "HEALTHCHECK CMD must be JSON exec form (no shell in between)"
    assert check.value[0] == "CMD"
    return list(check.value[1:])


def healthcheck_url(argv: list[str]):
    urls = [word.rstrip(",)") for arg in argv for word in arg.replace("'", " ").replace('"', " ").split() if word.startswith("http")]
    assert len(urls) == 1, f"expected one URL in the health check, got {argv}"
    return urlsplit(urls[0])


def exposed_port(commands: list[dockerfile.Command]) -> int:
    (port,) = final(commands, "EXPOSE").value
    return int(port.split("/")[0])


# ---- the Dockerfile -------------------------------------------------------------------------------------------------


def test_every_stage_builds_on_python_311_slim(commands):
    names = set()
    for stage in stages(commands):
        image, *rest = stage[0].value
        if image not in names:
            assert image.startswith("python:3.11-slim"), f"FROM {image}"
        if len(rest) == 2 and rest[0].upper() == "AS":
            names.add(rest[1])


def test_the_daemon_runs_as_a_non_root_user(commands):
    user = final(commands, "USER").value[0]
    name, _, group = user.partition(":")
    assert name not in ("root", "0") and group not in ("root", "0"), f"USER {user}"


def test_entrypoint_is_the_console_script_in_exec_form(commands):
    entrypoint = final(commands, "ENTRYPOINT")
    assert entrypoint.json, "ENTRYPOINT must be JSON exec form, so the daemon is PID 1 and gets the stop signal"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert list(entrypoint.value) == ["sse-monitor"]
    assert "sse-monitor" in scripts


def test_default_command_runs_the_daemon_on_a_mounted_config(commands):
    cmd = final(commands, "CMD")
    assert cmd.json, "CMD must be JSON exec form"
    assert cmd.value[0] == "run" and "--config" in cmd.value
    config = PurePosixPath(cmd.value[cmd.value.index("--config") + 1])
    assert config.is_absolute()
    # the config is mounted, never baked in: no COPY or ADD writes there
    for command in stages(commands)[-1]:
        if command.cmd in ("COPY", "ADD"):
            assert not str(config).startswith(command.value[-1].rstrip("/") + "/"), command.original
            assert command.value[-1] != str(config), command.original


def test_the_exposed_port_is_the_daemons_default_listen_port(commands):
    assert exposed_port(commands) == int(DEFAULT_LISTEN.rpartition(":")[2])


def test_healthcheck_asks_the_daemons_health_endpoint_on_the_exposed_port(commands):
    argv = healthcheck_argv(commands)
    assert argv[0] in ("python", "python3"), "slim images have no curl or wget: the check uses Python"
    url = healthcheck_url(argv)
    assert url.path == "/-/healthy"
    assert url.port == exposed_port(commands)


def test_stop_signal_is_sigterm(commands):
    assert final(commands, "STOPSIGNAL").value == ("SIGTERM",)


def test_the_package_is_installed_not_linked(commands):
    installs = [c for c in commands if c.cmd == "RUN" and "pip install" in " ".join(c.value)]
    assert installs, "no pip install"
    for command in installs:
        assert " -e " not in f" {command.value[0]} " and "--editable" not in command.value[0], command.original


def test_every_copy_source_exists_and_reaches_the_build_context(commands):
    ignore = dockerignore_patterns()
    copies = [c for c in commands if c.cmd in ("COPY", "ADD") and not any(f.startswith("--from") for f in c.flags)]
    assert copies
    for command in copies:
        for source in command.value[:-1]:
            path = ROOT / source
            assert path.exists(), f"{command.original}: {source} is not in the repository"
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            sent = [p for p in files if not ignored(p.relative_to(ROOT).as_posix(), ignore)]
            assert sent, f"{command.original}: .dockerignore keeps {source} out of the build context"
    # the package's own files are all sent; caches and bytecode are not
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "monitor").glob("*.py")}
    assert not any(ignored(m, ignore) for m in modules)
    assert ignored("monitor/__pycache__/cli.cpython-311.pyc", ignore)
    assert ignored(".git/config", ignore) and ignored("tests/conftest.py", ignore)


def dockerignore_patterns() -> list[tuple[bool, str]]:
    out = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        out.append((negated, line.lstrip("!").strip().strip("/")))
    return out


def ignored(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last pattern that matches the path, or one of its parent directories, decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for negated, pattern in patterns:
        if any(_match(candidate, pattern) for candidate in candidates):
            verdict = not negated
    return verdict


def _match(path: str, pattern: str) -> bool:
    if pattern.startswith("**/"):
        rest = pattern[3:]
        return any(_match("/".join(path.split("/")[i:]), rest) for i in range(len(path.split("/"))))
    return path.count("/") == pattern.count("/") and fnmatch.fnmatchcase(path, pattern)


# ---- what the image runs, run here ------------------------------------------------------------------------------


def run_healthcheck(argv: list[str], port: int) -> subprocess.CompletedProcess:
    """The image's health check command, with this machine's Python and the daemon's test port."""
    default = healthcheck_url(argv).port
    local = [sys.executable, *(arg.replace(f":{default}/", f":{port}/") for arg in argv[1:])]
    return subprocess.run(local, capture_output=True, text=True, timeout=30)


def test_healthcheck_passes_while_the_daemon_runs_and_the_daemon_stops_on_the_stop_signal(commands, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "targets:\n"
        "  - name: unreachable\n"
        "    url: http://127.0.0.1:9/v1/chat/completions\n"
        "    interval: 1h\n"
    )
    cmd = list(final(commands, "CMD").value)
    cmd[cmd.index("--config") + 1] = str(config)
    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", *cmd, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        wait_for_port(port, proc=daemon)
        argv = healthcheck_argv(commands)
        healthy = run_healthcheck(argv, port)
        assert healthy.returncode == 0, healthy.stderr

        stop = getattr(signal, final(commands, "STOPSIGNAL").value[0])
        daemon.send_signal(stop)
        # docker stop waits 10 s before it kills
        assert daemon.wait(timeout=10) == 0, daemon.stderr.read()
        assert run_healthcheck(argv, port).returncode != 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_the_documented_run_line_mounts_the_config_directory(commands):
    """The header comment says how to mount the config: it must match where CMD reads it."""
    config_dir = str(PurePosixPath(final(commands, "CMD").value[-1]).parent)
    header = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("#")]
    assert any(f":{config_dir}:ro" in line for line in header), f"no documented mount of {config_dir}"


def test_healthcheck_needs_no_credentials_when_the_web_config_turns_on_tls_client_certs_and_basic_auth(commands, tmp_path):
    """With --web.config.file the endpoints want TLS, a client certificate and a password; the image's health check
    has none of them and must still tell a live daemon from a dead one."""
    import bcrypt

    pki = make_pki(tmp_path)
    (tmp_path / "config.yaml").write_text("targets:\n  - name: unreachable\n    url: http://127.0.0.1:9/\n    interval: 1h\n")
    users = f"basic_auth_users:\n  prometheus: '{bcrypt.hashpw(b'pw', bcrypt.gensalt(4)).decode()}'\n"
    tls = (f"tls_server_config:\n  cert_file: {pki['server.crt']}\n  key_file: {pki['server.key']}\n"
           f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki['ca.crt']}\n")
    argv = healthcheck_argv(commands)
    for name, web in (("auth", users), ("tls", tls), ("both", tls + users)):
        (tmp_path / f"{name}.yml").write_text(web)
        cmd = list(final(commands, "CMD").value)
        cmd[cmd.index("--config") + 1] = str(tmp_path / "config.yaml")
        port = free_port()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", *cmd, "--listen", f"127.0.0.1:{port}",
             "--web.config.file", str(tmp_path / f"{name}.yml")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        try:
            wait_for_port(port, proc=daemon)
            healthy = run_healthcheck(argv, port)
            assert healthy.returncode == 0, (name, healthy.stdout, healthy.stderr)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=10) == 0, daemon.stderr.read()
            assert run_healthcheck(argv, port).returncode != 0, name
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
