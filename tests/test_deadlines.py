"""`Deadlines`: asyncio.timeout's semantics, with one timer for many awaits of one length."""

from __future__ import annotations

import asyncio
import time

import pytest

from mcp_tornado.deadlines import Deadlines


async def _guarded(deadlines: Deadlines, seconds: float) -> str:
    with deadlines.start():
        await asyncio.sleep(seconds)
    return "done"


@pytest.mark.gen_test
async def test_an_await_past_its_deadline_raises_timeout_and_the_task_goes_on() -> None:
    deadlines = Deadlines(0.05)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await _guarded(deadlines, 5)
    assert 0.04 <= time.monotonic() - started < 1.0
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the cancel it caused is taken back
    await asyncio.sleep(0)  # and the task is not cancelled later either
    assert len(deadlines) == 0


@pytest.mark.gen_test
async def test_awaits_within_their_deadline_are_untouched() -> None:
    deadlines = Deadlines(0.2)
    assert await asyncio.gather(*(_guarded(deadlines, 0.01) for _ in range(50))) == ["done"] * 50
    assert len(deadlines) == 0


@pytest.mark.gen_test
async def test_each_deadline_counts_from_its_own_start() -> None:
    """Staggered starts: the one timer re-arms for the next deadline instead of firing them all at once."""
    deadlines = Deadlines(0.15)
    ended: dict[str, float] = {}
    started = time.monotonic()

    async def run(label: str, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await _guarded(deadlines, 5)
        except TimeoutError:
            ended[label] = time.monotonic() - started

    await asyncio.gather(run("first", 0), run("second", 0.1), run("third", 0.3))
    assert ended["first"] < ended["second"] < ended["third"]
    assert ended["second"] - ended["first"] >= 0.08  # not fired together
    assert ended["third"] >= 0.43


@pytest.mark.gen_test
async def test_a_finished_oldest_does_not_end_a_younger_one_early() -> None:
    deadlines = Deadlines(0.2)
    await _guarded(deadlines, 0)  # arms the timer for its own deadline, then leaves
    await asyncio.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await _guarded(deadlines, 5)
    assert time.monotonic() - started >= 0.18


@pytest.mark.gen_test
async def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    deadlines = Deadlines(5)
    task = asyncio.ensure_future(_guarded(deadlines, 5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(deadlines) == 0


@pytest.mark.gen_test
async def test_a_cancel_from_elsewhere_at_the_deadline_stays_a_cancel() -> None:
    """Cancelled by its owner too: the cancellation goes on rather than turning into a timeout."""
    deadlines = Deadlines(0.05)

    async def cancelled_while_expiring() -> None:
        with deadlines.start():
            task = asyncio.current_task()
            assert task is not None
            asyncio.get_running_loop().call_later(0.05, task.cancel)
            await asyncio.sleep(5)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.ensure_future(cancelled_while_expiring())


@pytest.mark.gen_test
async def test_outside_a_task_it_refuses() -> None:
    deadlines = Deadlines(1)
    loop = asyncio.get_running_loop()
    failed: list[BaseException] = []

    def outside() -> None:
        try:
            deadlines.start().__enter__()
        except RuntimeError as exc:
            failed.append(exc)

    loop.call_soon(outside)
    await asyncio.sleep(0.01)
    assert failed and "inside a task" in str(failed[0])
