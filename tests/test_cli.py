"""The `mcp-tornado` command as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx2
import jwt
import pytest

from mcp_tornado.cli import main
from mcp_tornado.settings import Settings, SettingsError, transport_security
from tests.conftest import SECRET, wait_until

REPO = Path(__file__).parent.parent


def environ(**variables: str) -> dict[str, str]:
    """The command's environment: ours without the gateway's own variables, plus `variables`
    (it reads `os.environ`, so it runs as a process of its own rather than in ours)."""
    ours = {k: v for k, v in os.environ.items() if k not in {"JWT_SECRET", "HOST", "PORT"} and not k.startswith("MCP_")}
    return {**ours, **variables}


def run(*args: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`mcp-tornado ARGS...` as a user runs it (in `cwd`, where `serve --dev` keeps its secret)."""
    return subprocess.run(
        [sys.executable, "-m", "mcp_tornado", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def test_token_prints_a_jwt_for_the_server():
    done = run("token", "calculator", "--api-key", "k", "--user", "u", "--ttl", "60", env=environ(JWT_SECRET=SECRET))
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["serverName"] == "calculator" and claims["apiKey"] == "k" and claims["userId"] == "u"
    assert claims["exp"] - claims["iat"] == 60


def test_admin_token():
    done = run("token", "--admin", env=environ(JWT_SECRET=SECRET))
    assert done.returncode == 0, done.stderr
    assert jwt.decode(done.stdout.strip(), SECRET, algorithms=["HS256"])["admin"] is True


def test_token_without_secret_is_an_error(tmp_path):
    done = run("token", "calculator", env=environ(), cwd=tmp_path)  # no dev server's secret there either
    assert done.returncode == 2
    assert done.stderr == (
        "mcp-tornado: JWT_SECRET: required to sign tokens"
        " (or run `mcp-tornado serve --dev` here first: it keeps one in .mcp-tornado/dev-secret)\n"
    )
    assert not done.stdout


def test_check_reports_file_and_line(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("tools: []\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntools:\n  - name: t\n    handler: nowhere_module:fn\n    colour: blue\n")
    assert main(["check", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{good}: ok" in out
    assert re.search(rf"{re.escape(str(bad))}:5: tools\.0\.colour: Additional properties", out), out


def test_check_the_shipped_examples(capsys):
    assert main(["check", str(REPO / "servers.d")]) == 0


def test_connect_prints_client_configuration():
    done = run("connect", "calculator", "--port", "9000", env=environ(JWT_SECRET=SECRET))
    assert done.returncode == 0, done.stderr
    assert "http://127.0.0.1:9000/calculator/mcp" in done.stdout and "Bearer ey" in done.stdout
    assert "npx @modelcontextprotocol/inspector@2.12.0 --transport http" in done.stdout


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"MCP_SESSION_IDLE_TIMEOUT": "-1"}, "MCP_SESSION_IDLE_TIMEOUT"),
        ({}, "JWT_SECRET"),
    ],
)
def test_bad_settings_name_the_variable(environ, variable):
    with pytest.raises(SettingsError, match=variable):
        Settings.from_environ(environ)


def test_host_and_origin_checks_follow_the_listen_address():
    loopback = transport_security(Settings.from_environ({"JWT_SECRET": SECRET}))
    assert loopback is not None and "localhost:*" in loopback.allowed_hosts
    assert transport_security(Settings.from_environ({"JWT_SECRET": SECRET, "HOST": "0.0.0.0"})) is None
    public = {"JWT_SECRET": SECRET, "HOST": "0.0.0.0", "MCP_ALLOWED_ORIGINS": "https://app.example"}
    with pytest.raises(SettingsError, match="MCP_ALLOWED_HOSTS"):
        Settings.from_environ(public)
    configured = transport_security(Settings.from_environ({**public, "MCP_ALLOWED_HOSTS": "mcp.example"}))
    assert configured is not None and configured.allowed_origins == ["https://app.example"]
    assert configured.allowed_hosts == ["mcp.example"]


def test_durations_accept_fractions():
    settings = Settings.from_environ({"JWT_SECRET": SECRET, "MCP_SESSION_IDLE_TIMEOUT": "0.5"})
    assert settings.session_idle_timeout == 0.5


def test_serve_dev_prints_tokens_and_serves_health(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mcp_tornado",
            "serve",
            "--dev",
            "--port",
            "0",
            "--servers-dir",
            str(REPO / "servers.d"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environ(),
        cwd=tmp_path,  # where it keeps its secret
    )
    try:
        stdout = process.stdout
        assert stdout is not None
        lines: list[str] = []

        def token_printed() -> bool:
            lines.append(stdout.readline())
            assert lines[-1], f"it exited: {lines}"
            return lines[-1].strip().startswith("Authorization: Bearer")

        wait_until(token_printed, timeout=30, interval=0, message=lambda: f"no token printed: {lines}")
        health = next(line.split("health:")[1].strip() for line in lines if "health:" in line)
        body = httpx2.get(health).json()
        assert body["status"] == "ok" and "calculator" in body["servers"]
        assert any("admin token: ey" in line for line in lines)
    finally:
        process.terminate()
        assert process.wait(10) == 0
        if process.stdout is not None:
            process.stdout.close()
