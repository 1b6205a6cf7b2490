"""The supervisor's restart rules, with a real (failing or healthy) connection function."""

from __future__ import annotations

import asyncio

import pytest

from mcp_tornado.backends.supervisor import Supervisor
from tests.conftest import eventually


async def _is(supervisor: Supervisor, state: str) -> bool:
    return supervisor.state == state


@pytest.mark.gen_test
async def test_fast_crashes_back_off_then_open_the_circuit():
    attempts: list[float] = []

    async def crash(ready) -> None:
        attempts.append(asyncio.get_running_loop().time())
        raise RuntimeError("exit status 3")

    supervisor = Supervisor("crashy", crash, first_backoff=0.02, breaker_fast_crashes=4, breaker_cooldown=30)
    assert not await supervisor.wait_ready(5)
    await eventually(lambda: _is(supervisor, "crashed"))
    assert len(attempts) == 4 and supervisor.restarts == 4
    assert supervisor.last_error == "RuntimeError: exit status 3"
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps == sorted(gaps), "the delay between attempts grows"
    assert supervisor.retry_after() > 20  # the circuit is open: come back after the cool-down
    await supervisor.stop()
    assert supervisor.state == "stopped"


@pytest.mark.gen_test
async def test_a_healthy_connection_is_running_until_stopped():
    stopped = asyncio.Event()

    async def healthy(ready) -> None:
        ready()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    supervisor = Supervisor("healthy", healthy)
    assert await supervisor.wait_ready(5)
    assert supervisor.running and supervisor.last_error is None
    await supervisor.stop()
    assert stopped.is_set() and supervisor.state == "stopped"
