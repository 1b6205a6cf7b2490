"""Real parts for tests past one process: Debian's `redis-server` and `nginx`, run unprivileged
from temporary folders, and `serve --workers N` gateways as child processes.

`make test` installs both binaries; a fixture whose binary is missing fails saying so (never
skips: a cluster that is not tested is not known to work).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.conftest import SECRET, TEST_ENVIRON, wait_until
from tests.hostile.conftest import READY, GatewayProcess, spawn_gateway

__all__ = ["spawn_gateway"]  # a fixture of tests/hostile, used here too

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
PR_SET_PDEATHSIG = 1


def binary(name: str, *elsewhere: str) -> str:
    """The path of a program `make test` installs; fails the test when it is missing."""
    for candidate in (shutil.which(name), *elsewhere):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"{name} not found: run `make test`, which installs it (apt-get install redis-server nginx)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_us() -> None:
    """In a child before exec: SIGTERM it when this test process dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _answers(port: int, request: bytes, expect: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(request)
            return sock.recv(64).startswith(expect)
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- Redis ------------------------------------------------------------------------------------


@dataclasses.dataclass
class RedisServer:
    """A `redis-server` on a loopback port of its own, with no persistence unless `persistent`
    (an append-only file, written at every command: what it held survives `stop()` and
    `start()`). Both keep the port, so `url` stays good; a test that stops it starts it again."""

    directory: Path
    port: int = dataclasses.field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    persistent: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        command = [
            binary("redis-server", "/usr/bin/redis-server"),
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--save", "", "--daemonize", "no",
            *(["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_us)
        wait_until(
            lambda: _answers(self.port, b"PING\r\n", b"+PONG") or self.proc is None or self.proc.poll() is not None,
            timeout=START_TIMEOUT,
            message=lambda: f"redis-server did not answer PING: {self.log()}",
        )
        assert self.running, f"redis-server exited: {self.log()}"

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A persistent `redis-server` of the test's own, for a test that stops and starts it."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory, persistent=True)
    server.start()
    yield server
    server.stop()


# -- nginx ------------------------------------------------------------------------------------

# What `nginx -p DIR -c nginx.conf` needs around deploy/nginx.conf (an http-context snippet):
# every path it writes in DIR, so no root is needed.
MAIN_CONFIG = """\
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # The gateway asks nginx not to buffer SSE (X-Accel-Buffering: no); ignoring that here
    # proves the deploy configuration streams on its own.
    proxy_ignore_headers X-Accel-Buffering;
    # Which host answered, for the tests to see.
    add_header X-Upstream $upstream_addr always;
    include site.conf;
}}
"""


def site_config(template: str, upstreams: Sequence[int], listen: int) -> str:
    """deploy/nginx.conf with its upstream `server` lines and `listen` lines made local."""
    block = re.search(r"upstream mcp_tornado \{.*?\n\}", template, re.S)
    assert block, "deploy/nginx.conf: no `upstream mcp_tornado { ... }` block"
    servers = re.findall(r"^( *)server \S+:\d+([^;\n]*);\n", block.group(), re.M)
    assert servers, "deploy/nginx.conf: no `server host:port;` line in the upstream block"
    indent, options = servers[0]
    local = "".join(f"{indent}server 127.0.0.1:{port}{options};\n" for port in upstreams)
    upstream = re.sub(r"^ *server \S+:\d+[^;\n]*;\n", "", block.group(), flags=re.M)
    upstream = upstream.replace("least_conn;\n", "least_conn;\n" + local, 1)
    site = template.replace(block.group(), upstream)
    site, listens = re.subn(r"^( *)listen [^;\n]+;", rf"\g<1>listen 127.0.0.1:{listen};", site, count=1, flags=re.M)
    assert listens, "deploy/nginx.conf: no `listen` line"
    return site


@dataclasses.dataclass
class Nginx:
    """nginx, unprivileged, running deploy/nginx.conf in front of `upstreams` (gateway ports)."""

    directory: Path
    upstreams: list[int]
    port: int = dataclasses.field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        template = (DEPLOY / "nginx.conf").read_text()
        (self.directory / "site.conf").write_text(site_config(template, self.upstreams, self.port))
        (self.directory / "nginx.conf").write_text(MAIN_CONFIG.format(dir=self.directory))

    def command(self, *extra: str) -> list[str]:
        settings = f"daemon off; pid {self.directory}/nginx.pid; error_log {self.directory}/error.log;"
        nginx = binary("nginx", "/usr/sbin/nginx")
        return [nginx, "-p", str(self.directory), "-c", "nginx.conf", "-g", settings, *extra]

    def start(self) -> None:
        self.write_config()
        check = subprocess.run(self.command("-t", "-q"), capture_output=True, text=True)
        assert check.returncode == 0, f"nginx -t refused the configuration:\n{check.stderr}"
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, preexec_fn=_die_with_us)
        wait_until(
            lambda: _answers(self.port, b"GET /health HTTP/1.0\r\n\r\n", b"HTTP/") or self.proc.poll() is not None,
            timeout=START_TIMEOUT,
            message=lambda: f"nginx did not answer: {self.log()}",
        )
        assert self.proc.poll() is None, f"nginx exited: {self.log()}"

    def reload(self, upstreams: Sequence[int]) -> None:
        """Point nginx at other gateways (SIGHUP: it rereads the configuration)."""
        self.upstreams = list(upstreams)
        self.write_config()
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        _stop(self.proc)

    def log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[[Sequence[int]], Nginx]]:
    """`nginx([port, ...])`: nginx with deploy/nginx.conf in front of those gateway ports."""
    started: list[Nginx] = []

    def start(upstreams: Sequence[int]) -> Nginx:
        directory = tmp_path / f"nginx-{len(started)}"
        directory.mkdir()
        server = Nginx(directory, list(upstreams))
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


# -- gateways with workers ------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended: it waits only for its parent to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture
def serve(spawn_gateway: Callable[..., GatewayProcess]) -> Iterator[Callable[..., GatewayProcess]]:
    """`serve(servers_dir, workers=N, env={...})`: `mcp-tornado serve` as a child process; at
    the end it is stopped with SIGTERM, as an operator would, so its workers drain and exit."""
    started: list[GatewayProcess] = []

    def start(servers_dir: Path, *, workers: int = 1, env: dict[str, str] | None = None) -> GatewayProcess:
        gateway = spawn_gateway(
            servers_dir, env={"MCP_WORKERS": str(workers), "MCP_SHUTDOWN_GRACE": "5", **(env or {})}
        )
        started.append(gateway)
        return gateway

    yield start
    workers = [pid for gateway in started if gateway.proc.poll() is None for pid in children_of(gateway.proc.pid)]
    for gateway in started:
        if gateway.proc.poll() is None:
            gateway.proc.send_signal(signal.SIGTERM)
    for gateway in started:
        gateway.wait_exit(STOP_TIMEOUT)
    wait_until(lambda: not any(alive(pid) for pid in workers), message=f"workers left running: {workers}")


# -- hosts that restart on their own port -------------------------------------------------------


@dataclasses.dataclass
class Host:
    """`mcp-tornado serve` on a fixed port, to be stopped (SIGTERM: it drains) and started
    again on that same port, as a host is restarted in a rolling deploy."""

    servers_dir: Path
    log: Path
    env: dict[str, str]
    port: int = dataclasses.field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        environ = {**os.environ, **TEST_ENVIRON, "JWT_SECRET": SECRET, "PYTHONUNBUFFERED": "1", **self.env}
        command = [
            sys.executable, "-m", "mcp_tornado", "serve",
            "--port", str(self.port), "--servers-dir", str(self.servers_dir),
        ]  # fmt: skip
        with open(self.log, "ab") as errors:
            self.proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=errors, env=environ, preexec_fn=_die_with_us
            )
        stdout = self.proc.stdout
        assert stdout is not None
        line = b""

        def ready() -> bool:
            nonlocal line
            if select.select([stdout], [], [], 0.1)[0]:
                line = stdout.readline()
                assert line, f"the host exited: {self.log.read_text(errors='replace')[-3000:]}"
            return READY.search(line) is not None

        wait_until(ready, timeout=START_TIMEOUT, interval=0, message="the host did not start")

    def stop(self) -> int | None:
        """SIGTERM, as systemd sends it; the exit status."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT + 20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        return code


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Callable[..., Host]]:
    """`hosts(servers_dir, workers=N, env={...})`: a started `Host`; all are stopped at the end."""
    started: list[Host] = []

    def start(servers_dir: Path, *, workers: int = 1, env: dict[str, str] | None = None) -> Host:
        host = Host(servers_dir, tmp_path / f"host-{len(started)}.log", {"MCP_WORKERS": str(workers), **(env or {})})
        started.append(host)
        host.start()
        return host

    yield start
    for host in started:
        host.stop()
