"""No orphans, ever: a `command:` child's whole process tree ends with the gateway, even when the
gateway is killed with SIGKILL and so runs no cleanup at all (Linux: the stdio guard).

The servers here are the SDK stdio child whose shutdown hangs: it outlives its stdin, the way a
server stuck in a blocking call or a slow cleanup does, so closing its pipes does not end it. A
well-behaved child exits on its own when the gateway's end of its stdin closes; these do not.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx2
import pytest

from mcp_tornado import auth
from mcp_tornado.backends import stdio
from tests.conftest import SECRET, mcp_client, token

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guard needs Linux (prctl, /proc)")

T = TypeVar("T")
POLL_INTERVAL = 0.02
# The guard acts on the kernel's parent-death signal at once; 5 s is all slack for a busy machine.
GONE_WITHIN = 5.0
# An orderly stop may take the `mcp` client's grace periods: 2 s after stdin closes, then SIGTERM.
STOPPED_WITHIN = 10.0

# stdio_child.py with a shutdown that hangs for a minute (started from servers.d/, its cwd).
HANGING = (
    "import atexit, runpy, time; atexit.register(time.sleep, 60); runpy.run_path('stdio_child.py', run_name='__main__')"
)
# `$$` is a literal `$` in a definition; sh then runs "$0" -c "$1" and waits, so it is a real parent.
UNDER_SH = ["sh", "-c", '"$$0" -c "$$1"; exit', "${MCP_TEST_PYTHON}"]
SHAPES = {
    "child": ["${MCP_TEST_PYTHON}", "-c", HANGING],
    "grandchild": [*UNDER_SH, HANGING],
    # setsid(): out of the process group, where a group kill cannot reach it (`detached: true` in node).
    "grandchild-that-left-the-group": [*UNDER_SH, "import os; os.setsid(); " + HANGING],
}


# -- processes, as /proc shows them ------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(root: int) -> set[tuple[int, str]]:
    """The running processes below `root`, each as (pid, start time): a pid alone may be reused."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and fields[0] not in "ZX":
            table[int(entry.name)] = (int(fields[1]), fields[19])
    found: set[tuple[int, str]] = set()
    level = {root}
    while level:
        level = {pid for pid, (parent, _) in table.items() if parent in level}
        found |= {(pid, table[pid][1]) for pid in level}
    return found


def running(processes: set[tuple[int, str]]) -> list[str]:
    """Those of `processes` still running (a zombie has ended), as "pid: command line"."""
    alive = []
    for pid, started in sorted(processes):
        fields = _stat(pid)
        if fields and fields[0] not in "ZX" and fields[19] == started:
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            alive.append(f"{pid}: {command.strip()[:150]}")
    return alive


def poll(check: Callable[[], T], *, timeout: float) -> T:
    """Call `check()` until it returns something truthy or `timeout` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
    return value


# -- the gateway and its children --------------------------------------------------------------


def _define(servers_dir: Path, command: list[str]) -> Path:
    path = servers_dir / "hangs.yaml"
    path.write_text(json.dumps({"command": command, "start": "eager", "timeout": 30}))  # JSON is YAML
    return path


def _server_pid(base_url: str) -> int:
    """One tools/call through the gateway: the stdio server's own pid, so it surely runs."""

    async def call() -> int:
        async with mcp_client(f"{base_url}/hangs/mcp", token("hangs", api_key=None)) as client:
            return int((await client.call_tool("pid", {})).content[0].text)

    # A loop of its own, never made the current one: asyncio.run() would unset the thread's loop.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(call())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_gateway_killed_with_sigkill_leaves_no_process_behind(spawn_gateway, servers_dir, shape):
    _define(servers_dir, SHAPES[shape])
    gateway = spawn_gateway(servers_dir)
    server = _server_pid(gateway.base_url)
    tree = descendants(gateway.proc.pid)
    assert server in {pid for pid, _ in tree}
    parent, group = (int(field) for field in _stat(server)[1:3])
    if shape != "child":
        assert parent != gateway.proc.pid, "sh should stand between the gateway and the server"
    if shape == "grandchild-that-left-the-group":
        assert group == server, "the server should lead a process group of its own"

    gateway.proc.send_signal(signal.SIGKILL)
    gateway.proc.wait()

    assert poll(lambda: not running(tree), timeout=GONE_WITHIN), (
        f"still running {GONE_WITHIN} s after the gateway was killed: {running(tree)}"
    )


@pytest.mark.parametrize("shape", ["well-behaved", "grandchild-that-left-the-group"])
def test_removing_the_definition_ends_the_whole_tree_without_a_crash_report(spawn_gateway, servers_dir, shape):
    command = ["${MCP_TEST_PYTHON}", "stdio_child.py"] if shape == "well-behaved" else SHAPES[shape]
    definition = _define(servers_dir, command)
    gateway = spawn_gateway(servers_dir)
    _server_pid(gateway.base_url)
    tree = descendants(gateway.proc.pid)
    assert len(tree) >= 2, f"the server and its guard: {running(tree)}"

    definition.unlink()

    assert poll(lambda: not running(tree), timeout=STOPPED_WITHIN), f"outlived its definition: {running(tree)}"
    assert not descendants(gateway.proc.pid), "a new child was started"
    assert gateway.proc.poll() is None
    assert not re.search(r"hangs: .*(restarting|crashed) in", gateway.log_text()), gateway.log_text()[-3000:]


def test_a_missing_program_is_still_reported_by_name(spawn_gateway, servers_dir):
    _define(servers_dir, ["no-such-program-here", "--flag"])
    gateway = spawn_gateway(servers_dir)
    admin = {"Authorization": f"Bearer {auth.mint(SECRET, admin=True)}"}

    def last_error() -> str | None:
        return httpx2.get(f"{gateway.base_url}/servers/hangs", headers=admin).json()["last_error"]

    expected = "FileNotFoundError: [Errno 2] No such file or directory: 'no-such-program-here'"
    assert poll(last_error, timeout=STOPPED_WITHIN) == expected


# -- the guard on its own ----------------------------------------------------------------------


def _guard(parent: int, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-S", str(stdio.GUARD), str(parent), "--", *command],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_guard_passes_on_the_commands_exit_status_and_output():
    result = _guard(os.getpid(), "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert _guard(os.getpid(), "sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM


def test_the_command_gets_the_signal_dispositions_it_would_have_had_without_the_guard():
    # Python ignores SIGPIPE for itself; a command that inherited that would loop on EPIPE.
    masks = ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]  # grep's own ignored and blocked signals
    direct = subprocess.run(masks, capture_output=True, text=True, timeout=30)
    assert _guard(os.getpid(), *masks).stdout == direct.stdout


def test_a_guard_whose_gateway_is_already_gone_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    result = _guard(1, "touch", str(marker))  # pid 1 is not its parent: the gateway "died" before it started
    assert result.returncode != 0 and not marker.exists()


def test_a_missing_program_is_one_short_line_on_stderr():
    result = _guard(os.getpid(), "no-such-program-here", "--flag")
    assert (result.returncode, result.stderr) == (127, "program not found: no-such-program-here\n")
