"""`serve --workers N`: one port, N whole gateways behind it, and a parent that restarts them
when they die, drains them on SIGTERM and takes them along when it is killed.

These stories are about the processes, so they use /health and stateless (2026-07-28) requests,
which any worker answers on its own; sessions shared between workers and hosts (Redis) are
test_shared_sessions.py's and test_rolling_restart.py's.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from mcp_tornado.settings import Settings, SettingsError
from tests.cluster.conftest import alive, children_of
from tests.conftest import SECRET, wait_until
from tests.e2e.test_stateless import envelope, modern_headers


def health(base_url: str) -> dict[str, Any]:
    """/health on a connection of its own: the kernel may hand each to any worker."""
    body: dict[str, Any] = httpx2.get(f"{base_url}/health", headers={"Connection": "close"}).json()
    return body


def call(base_url: str, tool: str, arguments: dict[str, Any], progress: str | None = None) -> dict[str, Any]:
    """A stateless `tools/call` body and headers for the `everything` test server."""
    body = envelope("tools/call", {"name": tool, "arguments": arguments})
    if progress is not None:
        body["params"]["_meta"]["progressToken"] = progress
    return {
        "url": f"{base_url}/everything/mcp",
        "json": body,
        "headers": {**modern_headers("tools/call", name=tool), "Connection": "close"},
    }


def test_every_worker_answers_on_the_one_port(serve, servers_dir, redis_server):
    gateway = serve(servers_dir, workers=2, env={"MCP_REDIS_URL": redis_server.url})
    workers = children_of(gateway.proc.pid)
    assert len(workers) == 2
    seen: dict[int, int] = {}

    def both_answered() -> bool:
        worker = health(gateway.base_url)["worker"]
        seen[worker["id"]] = worker["pid"]
        return len(seen) == 2

    wait_until(both_answered, message=lambda: f"only {seen} answered")
    assert sorted(seen) == [0, 1]
    assert sorted(seen.values()) == workers

    for _ in range(6):
        answer = httpx2.post(**call(gateway.base_url, "echo", {"message": "hi"}))
        assert answer.status_code == 200
        assert answer.json()["result"]["content"][0]["text"] == "hi"
    scraped: set[str] = set()

    def both_scraped() -> bool:
        text = httpx2.get(f"{gateway.base_url}/metrics", headers={"Connection": "close"}).text
        scraped.update(re.findall(r'^mcp_tornado_definition_problems\{worker="(\d)"\} 0\.0$', text, re.M))
        return scraped == {"0", "1"}

    wait_until(both_scraped, message=lambda: f"/metrics said only workers {scraped}")


def test_a_killed_worker_is_started_again_and_the_port_keeps_answering(serve, servers_dir, redis_server):
    gateway = serve(servers_dir, workers=2, env={"MCP_REDIS_URL": redis_server.url})
    victim, survivor = children_of(gateway.proc.pid)
    os.kill(victim, signal.SIGKILL)
    for _ in range(5):  # the survivor answers meanwhile: the listening socket outlives any worker
        assert health(gateway.base_url)["status"] == "ok"

    def replaced() -> list[int]:
        workers = children_of(gateway.proc.pid)
        return [pid for pid in workers if pid not in (victim, survivor)] if len(workers) == 2 else []

    (newcomer,) = wait_until(replaced, message="the killed worker was not started again")  # type: ignore[misc]
    wait_until(lambda: health(gateway.base_url)["worker"]["pid"] == newcomer, message="the new worker never answered")
    assert survivor in children_of(gateway.proc.pid)
    assert "was killed by SIGKILL" in gateway.log_text()


def test_sigterm_drains_every_worker_then_the_parent_exits_0(serve, servers_dir, redis_server):
    gateway = serve(servers_dir, workers=2, env={"MCP_REDIS_URL": redis_server.url, "MCP_SHUTDOWN_GRACE": "10"})
    workers = children_of(gateway.proc.pid)
    with httpx2.stream("POST", **call(gateway.base_url, "slow", {"steps": 8, "delay": 0.25}, progress="p")) as answer:
        lines = answer.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))  # the call is in flight
        began = time.monotonic()
        gateway.proc.send_signal(signal.SIGTERM)
        last = [json.loads(line[5:]) for line in lines if line.startswith("data:")][-1]
    assert last["result"]["content"][0]["text"] == "done 8 steps"
    assert gateway.wait_exit(10) == 0
    assert time.monotonic() - began < 10
    assert not any(alive(pid) for pid in workers)
    assert "SIGTERM: stopping 2 workers" in gateway.log_text()


def test_a_second_sigterm_kills_the_workers_at_once(serve, servers_dir, redis_server):
    gateway = serve(servers_dir, workers=2, env={"MCP_REDIS_URL": redis_server.url, "MCP_SHUTDOWN_GRACE": "60"})
    workers = children_of(gateway.proc.pid)
    with httpx2.stream("POST", **call(gateway.base_url, "slow", {"steps": 1000, "delay": 1}, progress="p")) as answer:
        # Kept, not dropped after the first event: a dropped iterator closes the response, and a
        # stateless call whose client has gone is cancelled, leaving nothing to drain.
        events = (line for line in answer.iter_lines() if line.startswith("data:"))
        assert next(events)
        gateway.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "shutting down" in gateway.log_text())
        began = time.monotonic()
        gateway.proc.send_signal(signal.SIGTERM)
        assert gateway.wait_exit(5) == 128 + signal.SIGTERM
        assert time.monotonic() - began < 2
        assert events  # alive until the end
    assert not any(alive(pid) for pid in workers)


def test_the_workers_do_not_outlive_a_killed_parent(serve, servers_dir, redis_server):
    gateway = serve(servers_dir, workers=2, env={"MCP_REDIS_URL": redis_server.url})
    workers = children_of(gateway.proc.pid)
    gateway.proc.send_signal(signal.SIGKILL)
    gateway.wait_exit(5)
    # The kernel sends each worker SIGTERM (PR_SET_PDEATHSIG): with nothing in flight it is gone at once.
    wait_until(lambda: not any(alive(pid) for pid in workers), message=lambda: f"left running: {workers}")
    wait_until(lambda: _refused(gateway.base_url), message="the port still answers")


def _refused(base_url: str) -> bool:
    try:
        httpx2.get(f"{base_url}/health")
    except httpx2.ConnectError:
        return True
    return False


def test_more_than_one_worker_needs_redis(servers_dir):
    environ = {k: v for k, v in os.environ.items() if k != "MCP_REDIS_URL"}
    command = [sys.executable, "-m", "mcp_tornado", "serve", "--port", "0", "--workers", "2"]
    done = subprocess.run(
        [*command, "--servers-dir", str(servers_dir)],
        env={**environ, "JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "MCP_WORKERS=2 needs MCP_REDIS_URL" in done.stderr
    assert "sessions would not be shared across workers" in done.stderr
    assert done.stdout == ""


# -- the supervisor alone, with scripted workers --------------------------------------------

SCRIPTED = """
import logging, sys, time
from mcp_tornado import workers
from mcp_tornado.settings import Settings

logging.basicConfig(level=logging.INFO, format="%(message)s")

def run_worker(settings, sockets, on_ready):
    {body}

settings = Settings(dev=True, port=0, workers=2, redis_url="redis://127.0.0.1:1/0", shutdown_grace=1)
sys.exit(workers.serve(settings, lambda port: print("ready", port, flush=True), run_worker))
"""


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """`scripted(body)`: a supervisor of two workers whose `run_worker` is `body`; killed at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(body: str) -> subprocess.Popen[str]:
        script = tmp_path / f"scripted-{len(started)}.py"
        script.write_text(SCRIPTED.format(body=textwrap.indent(textwrap.dedent(body), "    ").strip()))
        root = Path(__file__).resolve().parents[2]
        proc = subprocess.Popen(
            [sys.executable, "-u", str(script)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()  # its workers follow it (PR_SET_PDEATHSIG)
        proc.communicate()


def test_a_worker_that_dies_before_it_is_ready_stops_the_start(scripted):
    proc = scripted("return 3 if settings.worker_id == 1 else time.sleep(60)")
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "worker 1" in output and "exited with status 3 before it was ready; not starting" in output
    assert "ready" not in output.split()


def test_a_worker_that_keeps_dying_is_started_again_ever_later(scripted):
    proc = scripted(
        """
        on_ready(0)
        if settings.worker_id == 1:
            time.sleep(0.05)
            return 3
        time.sleep(60)
        """,
    )
    assert proc.stdout is not None
    output = ""

    def third_restart() -> bool:
        nonlocal output
        if select.select([proc.stdout], [], [], 0.1)[0]:  # never a read that could block past the deadline
            output += os.read(proc.stdout.fileno(), 65536).decode()  # type: ignore[union-attr]
        return "starting it again in 2.0 s" in output

    wait_until(third_restart, timeout=20, message=lambda: output)
    delays = re.findall(r"starting it again in (\S+ s)", output)
    assert delays == ["0.5 s", "1.0 s", "2.0 s"]
    assert re.search(r"^ready \d+$", output, re.M)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output + rest


def test_one_process_is_worker_0_and_its_metrics_carry_no_worker_label(serve, servers_dir):
    gateway = serve(servers_dir)
    assert health(gateway.base_url)["worker"] == {"id": 0, "pid": gateway.proc.pid}
    assert children_of(gateway.proc.pid) == []
    assert "mcp_tornado_definition_problems 0.0\n" in httpx2.get(f"{gateway.base_url}/metrics").text


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MCP_WORKERS": "3"}, "MCP_WORKERS=3 needs MCP_REDIS_URL"),
        ({"MCP_WORKERS": "0"}, "MCP_WORKERS: must be greater than zero"),
        ({"MCP_WORKERS": "two"}, "MCP_WORKERS='two'"),
        ({"MCP_REDIS_URL": "http://127.0.0.1:6379"}, "MCP_REDIS_URL: must start with redis://"),
    ],
)
def test_worker_settings_that_cannot_work_are_refused(environ, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_environ({"JWT_SECRET": SECRET, **environ})


def test_worker_settings_from_the_environment():
    settings = Settings.from_environ({"JWT_SECRET": SECRET, "MCP_WORKERS": "4", "MCP_REDIS_URL": "redis://r:6379/0"})
    assert (settings.workers, settings.redis_url, settings.worker_id) == (4, "redis://r:6379/0", 0)
