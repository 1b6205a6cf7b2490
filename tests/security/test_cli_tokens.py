"""Issue [7], tokens when you need them: `serve --dev` keeps its secret (0600, in a folder git
ignores) and uses it again, so `token` and `connect` run in the same directory sign tokens the
running dev server accepts; `connect` picks a usable API key and pins the Inspector it prints.

Every command runs as a process of its own, in a directory of its own, with an explicit env.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import jwt
import pytest

from tests.conftest import wait_until
from tests.e2e.wire import headers, init_body

SECRET_FILE = Path(".mcp-tornado/dev-secret")
DEFINITION = """\
name: keyed
api_keys:
  - "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
  - the-plain-key
  - another-plain-key
tools:
  - name: echo
    handler: keyed_tools:echo
"""


def environ() -> dict[str, str]:
    """Our environment without the gateway's variables: no JWT_SECRET, no MCP_*."""
    ours = {k: v for k, v in os.environ.items() if k not in {"JWT_SECRET", "HOST", "PORT"} and not k.startswith("MCP_")}
    return ours


def command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_tornado", *args], capture_output=True, text=True, cwd=cwd, env=environ(), timeout=60
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    servers = tmp_path / "servers.d"
    servers.mkdir()
    (servers / "keyed.yaml").write_text(DEFINITION)
    (servers / "keyed_tools.py").write_text("async def echo(arguments, context):\n    return 'hi'\n")
    return tmp_path


class DevServer:
    """`mcp-tornado serve --dev --port 0` in `cwd`, until stopped; `url` once it has printed it."""

    def __init__(self, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mcp_tornado", "serve", "--dev", "--port", "0"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=environ(),
        )
        self.lines: list[str] = []
        wait_until(self._ready, timeout=30, interval=0, message=lambda: f"not ready: {self.lines}")
        self.url = next(line.split(" on ")[1].strip() for line in self.lines if "(dev) on " in line)

    def _ready(self) -> bool:
        assert self.process.stdout is not None
        self.lines.append(self.process.stdout.readline())
        assert self.lines[-1], f"it exited: {self.lines}"
        return self.lines[-1].strip().startswith("Authorization: Bearer")

    def stop(self) -> None:
        self.process.terminate()
        assert self.process.wait(10) == 0
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def dev_server(workdir: Path) -> Iterator[DevServer]:
    server = DevServer(workdir)
    yield server
    server.stop()


def test_dev_keeps_its_secret_in_a_0600_file_that_git_ignores(dev_server, workdir):
    secret = workdir / SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    assert (secret.parent / ".gitignore").read_text().splitlines()[-1] == "*"
    assert any(f"secret: {SECRET_FILE}" in line for line in dev_server.lines)
    ignored = subprocess.run(["git", "init", "-q", str(workdir)], capture_output=True)
    if ignored.returncode == 0:  # git is there: ask it
        check = subprocess.run(["git", "-C", str(workdir), "check-ignore", "-q", str(SECRET_FILE)])
        assert check.returncode == 0, "git does not ignore the dev secret"


def test_token_run_next_to_a_dev_server_signs_with_its_secret(dev_server, workdir):
    done = command("token", "keyed", "--api-key", "the-plain-key", cwd=workdir)
    assert done.returncode == 0, done.stderr
    url = f"{dev_server.url}/keyed/mcp"
    response = httpx2.post(url, json=init_body(), headers=headers(done.stdout.strip()))
    assert response.status_code == 200, response.text


def test_the_next_dev_start_uses_the_same_secret(workdir):
    first = DevServer(workdir)
    secret = (workdir / SECRET_FILE).read_text()
    minted = command("token", "keyed", "--api-key", "the-plain-key", cwd=workdir).stdout.strip()
    first.stop()
    second = DevServer(workdir)
    try:
        assert (workdir / SECRET_FILE).read_text() == secret
        response = httpx2.post(f"{second.url}/keyed/mcp", json=init_body(), headers=headers(minted))
        assert response.status_code == 200, response.text  # a token from before the restart still works
    finally:
        second.stop()


def test_a_secret_file_others_can_read_is_refused(workdir):
    (workdir / SECRET_FILE.parent).mkdir()
    (workdir / SECRET_FILE).write_text("x" * 40)
    (workdir / SECRET_FILE).chmod(0o644)
    done = command("token", "keyed", cwd=workdir)
    assert done.returncode == 2 and not done.stdout
    assert "dev-secret: must be a file of yours only you can read (chmod 600)" in done.stderr


def test_without_jwt_secret_or_dev_secret_token_says_how_to_get_one(workdir):
    done = command("token", "keyed", cwd=workdir)
    assert done.returncode == 2 and not done.stdout
    assert "JWT_SECRET: required to sign tokens" in done.stderr and "serve --dev" in done.stderr


def test_connect_picks_the_first_plain_api_key_and_pins_the_inspector(dev_server, workdir):
    done = command("connect", "keyed", "--port", dev_server.url.rsplit(":", 1)[1], cwd=workdir)
    assert done.returncode == 0, done.stderr
    bearer = re.search(r"Authorization: Bearer (\S+?)'", done.stdout)
    assert bearer is not None, done.stdout
    claims = jwt.decode(bearer.group(1), options={"verify_signature": False})
    assert claims["apiKey"] == "the-plain-key"  # the sha256 entry cannot be sent; the first plain one is
    assert "npx @modelcontextprotocol/inspector@2.12.0 --transport http" in done.stdout
    assert "npx @modelcontextprotocol/inspector " not in done.stdout  # never unpinned
    response = httpx2.post(f"{dev_server.url}/keyed/mcp", json=init_body(), headers=headers(bearer.group(1)))
    assert response.status_code == 200, response.text


def test_connect_says_when_it_cannot_pick_a_key(workdir):
    (workdir / "servers.d/hashed.yaml").write_text(
        DEFINITION.replace("name: keyed", "name: hashed").replace("  - the-plain-key\n  - another-plain-key\n", "")
    )
    (workdir / SECRET_FILE.parent).mkdir(mode=0o700)
    (workdir / SECRET_FILE).write_text("y" * 40)
    (workdir / SECRET_FILE).chmod(0o600)
    done = command("connect", "hashed", cwd=workdir)
    assert done.returncode == 0
    assert "hashed lists only sha256 API keys: pass the key with --api-key" in done.stderr
    assert "no valid definition of nowhere" in command("connect", "nowhere", cwd=workdir).stderr
