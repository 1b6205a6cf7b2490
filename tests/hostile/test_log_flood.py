"""A flood of bad requests must not become a flood of log lines: the real process, its real log."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from tests.conftest import eventually
from tests.e2e.wire import headers, init_body

REQUESTS = 5000
CONNECTIONS = 4
# Without the rate limit each 401 is an access-log line of about 90 bytes: 5,000 of them ~450 KB.
LOG_GROWTH_BOUND = 64 * 1024


@pytest.mark.gen_test(timeout=120)
async def test_thousands_of_bad_requests_log_a_bounded_amount(spawn_gateway, servers_dir):
    gateway = spawn_gateway(servers_dir)
    url = f"{gateway.base_url}/everything/mcp"
    before = gateway.log_bytes()

    async def attacker(count: int) -> set[int]:
        statuses = set()
        async with httpx2.AsyncClient(limits=httpx2.Limits(max_connections=1), timeout=30) as http:
            for i in range(count):
                if i % 2:  # no token
                    response = await http.post(url, json=init_body(), headers=headers())
                else:  # a body that is not JSON
                    response = await http.post(url, content=b"{oops", headers=headers())
                statuses.add(response.status_code)
        return statuses

    results = await asyncio.gather(*(attacker(REQUESTS // CONNECTIONS) for _ in range(CONNECTIONS)))
    assert set().union(*results) == {400, 401}

    async def told() -> bool:
        return "suppressed" in gateway.log_text()

    await eventually(told, timeout=10, message=f"no 'suppressed' line in the log:\n{gateway.log_text()[-2000:]}")
    growth = gateway.log_bytes() - before
    assert growth < LOG_GROWTH_BOUND, f"the log grew by {growth} bytes for {REQUESTS} bad requests"
    async with httpx2.AsyncClient() as http:
        assert (await http.get(f"{gateway.base_url}/health")).status_code == 200
