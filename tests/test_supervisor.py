"""The supervisor's restart rules, with a real (failing or healthy) connection function."""

from __future__ import annotations

import asyncio

import pytest

from mcp_tornado.backends.supervisor import Life, Supervisor
from tests.conftest import eventually


async def _is(supervisor: Supervisor, state: str) -> bool:
    return supervisor.state == state


@pytest.mark.gen_test
async def test_fast_crashes_back_off_then_open_the_circuit():
    attempts: list[float] = []

    async def crash(life: Life) -> None:
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

    async def healthy(life: Life) -> None:
        life.ready()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    supervisor = Supervisor("healthy", healthy)
    assert await supervisor.wait_ready(5)
    assert supervisor.running and supervisor.last_error is None
    await supervisor.stop()
    assert stopped.is_set() and supervisor.state == "stopped"


@pytest.mark.gen_test
async def test_renewing_ends_the_life_and_starts_the_next_without_counting_a_crash():
    lives = 0

    async def renewable(life: Life) -> None:
        nonlocal lives
        lives += 1
        life.ready()
        await life.wait_end()  # returns when the supervisor renews the connection

    supervisor = Supervisor("renewable", renewable)
    assert await supervisor.wait_ready(5)
    supervisor.renew()
    assert await supervisor.wait_ready(5)
    assert lives == 2 and supervisor.restarts == 0 and supervisor.running
    await supervisor.stop()


@pytest.mark.gen_test
async def test_a_connection_that_ends_is_started_again():
    lives = 0

    async def short(life: Life) -> None:
        nonlocal lives
        lives += 1
        life.ready()
        if lives == 1:
            life.end()  # the upstream closed the connection
        await life.wait_end()

    supervisor = Supervisor("short", short, first_backoff=0.01)
    supervisor.start()
    await eventually(lambda: _value(lives == 2 and supervisor.running))
    assert supervisor.restarts == 1 and supervisor.last_error is None  # recovered: the error is history
    await supervisor.stop()


async def _value(value: bool) -> bool:
    return value
