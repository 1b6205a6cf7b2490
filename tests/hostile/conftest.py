"""The real `mcp-tornado serve` as a child process, for attacks that need a whole process:
its memory, its descriptors, its log, its signals, its exit."""

from __future__ import annotations

import dataclasses
import os
import re
import resource
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import SECRET, TEST_ENVIRON, wait_until

READY = re.compile(rb"on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 30.0


@dataclasses.dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_bytes(self) -> int:
        return self.log.stat().st_size

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or None if it is still running after `timeout` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


@pytest.fixture
def spawn_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """`spawn_gateway(servers_dir, env={...}, max_fds=None)`: a served gateway on a free port."""
    started: list[GatewayProcess] = []

    def spawn(servers_dir: Path, *, env: dict[str, str] | None = None, max_fds: int | None = None) -> GatewayProcess:
        log = tmp_path / f"gateway-{len(started)}.log"
        environ = {**os.environ, **TEST_ENVIRON, "JWT_SECRET": SECRET, "PYTHONUNBUFFERED": "1", **(env or {})}

        def limit() -> None:
            if max_fds is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (max_fds, max_fds))

        with open(log, "wb") as errors:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mcp_tornado", "serve", "--port", "0", "--servers-dir", str(servers_dir)],
                stdout=subprocess.PIPE,
                stderr=errors,
                env=environ,
                preexec_fn=limit,
            )
        stdout = proc.stdout
        assert stdout is not None
        lines: list[bytes] = []

        def ready() -> re.Match[bytes] | None:
            if not select.select([stdout], [], [], 0.1)[0]:
                return None  # nothing printed yet: the deadline still holds (readline would block)
            lines.append(stdout.readline())
            if not lines[-1]:
                raise AssertionError("it exited")
            return READY.search(lines[-1])

        try:
            match = wait_until(ready, timeout=START_TIMEOUT, interval=0)
        except AssertionError as exc:
            proc.kill()
            proc.wait()
            tail = log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"gateway did not start ({exc}): {b''.join(lines)!r}\n{tail}") from None
        assert isinstance(match, re.Match)
        gateway = GatewayProcess(proc, int(match.group(1)), log)
        started.append(gateway)
        return gateway

    yield spawn
    for gateway in started:
        if gateway.proc.poll() is None:
            gateway.proc.send_signal(signal.SIGKILL)
            gateway.proc.wait()
        if gateway.proc.stdout is not None:
            gateway.proc.stdout.close()


def raw_request(port: int, data: bytes, *, read: bool = True, timeout: float = 5.0) -> bytes:
    """Send `data` on a fresh connection and return what comes back until the server closes or
    `timeout` passes (nothing is read when `read` is False)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if not read:
            return b""
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and b"Connection: close" not in b"".join(chunks):
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)
