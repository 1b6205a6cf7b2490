"""What lands in servers.d/ is not always a file: a FIFO or a huge file is a problem, never a hang."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from mcp_tornado.definitions import MAX_DEFINITION_BYTES
from tests.conftest import eventually
from tests.test_admin import ADMIN

SIMPLE = """\
tools:
  - name: echo
    handler: everything_tools:echo
    inputSchema: {type: object, properties: {message: {type: string}}, required: [message]}
"""
# How long a reader may sit on a FIFO before the test opens its other end to free it.
RESCUE_AFTER_SECONDS = 10.0


@contextlib.contextmanager
def rescue_readers(fifo: Path) -> Iterator[threading.Event]:
    """Watch `fifo` from a thread: if the code under test is stuck reading it after
    `RESCUE_AFTER_SECONDS`, remove it and open its write end (which ends that read), so the
    test fails instead of hanging. The event yielded is set when a reader had to be rescued."""
    done, rescued = threading.Event(), threading.Event()

    def watch() -> None:
        if done.wait(RESCUE_AFTER_SECONDS):
            return
        while not done.wait(0.05):
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO unless someone has it open to read
            except OSError:
                continue
            rescued.set()
            fifo.unlink()  # so nothing can block on it again
            os.close(fd)
            return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield rescued
    finally:
        done.set()
        watcher.join()


@pytest.mark.gen_test(timeout=60)
async def test_a_fifo_at_start_up_is_a_problem_not_a_hang(spawn_gateway, servers_dir):
    fifo = servers_dir / "evil.yaml"
    os.mkfifo(fifo)
    with rescue_readers(fifo) as rescued:
        gateway = spawn_gateway(servers_dir)
    assert not rescued.is_set(), "the gateway blocked reading the FIFO before it listened"
    async with httpx2.AsyncClient() as http:
        health = await http.get(f"{gateway.base_url}/health")
        listed = await http.get(f"{gateway.base_url}/servers", headers=ADMIN)
    assert health.status_code == 200 and "everything" in health.json()["servers"]
    assert {"source": str(fifo), "last_error": f"{fifo}:1: not a regular file"} in listed.json()["failing"]


@pytest.mark.gen_test(timeout=30)
async def test_a_fifo_created_while_running_does_not_stop_the_watcher(gateway, base_url, servers_dir):
    fifo = servers_dir / "evil.yaml"
    with rescue_readers(fifo) as rescued:
        os.mkfifo(fifo)
        # Open and close it, as a writer of a file would: the watcher takes it up at once, before later.yaml.
        os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
        (servers_dir / "later.yaml").write_text(SIMPLE)

        async def later_served() -> bool:
            async with httpx2.AsyncClient() as http:
                return "later" in (await http.get(f"{base_url}/health")).json()["servers"]

        await eventually(later_served, message="a file added after the FIFO was never loaded")
    assert not rescued.is_set(), "the gateway blocked reading the FIFO"
    assert "evil" not in gateway.registry


@pytest.mark.gen_test(timeout=30)
async def test_a_file_over_the_size_cap_is_refused_and_the_last_good_version_serves(gateway, base_url, servers_dir):
    path = servers_dir / "big.yaml"
    padding = MAX_DEFINITION_BYTES - len(SIMPLE) - 1
    path.write_text(SIMPLE + "#" * padding + "\n")  # exactly at the cap: loaded
    assert path.stat().st_size == MAX_DEFINITION_BYTES
    await eventually(lambda: _value("big" in gateway.registry), message="a file at the cap was not loaded")

    with path.open("a") as grow:
        grow.write("#")  # one byte over
    await eventually(lambda: _value(str(path) in gateway.registry.problems), message="one byte over was not refused")
    assert gateway.registry.problems[str(path)] == f"{path}:1: larger than {MAX_DEFINITION_BYTES} bytes"
    async with httpx2.AsyncClient() as http:
        shown = await http.get(f"{base_url}/servers/big", headers=ADMIN)
    assert shown.status_code == 200 and shown.json()["state"] == "running"
    assert shown.json()["last_error"] == f"{path}:1: larger than {MAX_DEFINITION_BYTES} bytes"


async def _value(value: bool) -> bool:
    return value
