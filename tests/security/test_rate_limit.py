"""Issue [7], rate limits: a token bucket per identity and per client address on the MCP routes
(legacy SSE included); past it 429 with `Retry-After` and a JSON-RPC error, and nobody else
is slowed down. The buckets are bounded in number, whatever a caller cycles through.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from mcp_tornado.rate_limit import RateLimiter
from tests.conftest import token
from tests.e2e.wire import headers, init_body, open_session

PING = {"jsonrpc": "2.0", "id": 3, "method": "ping"}


def retry_after(response: httpx2.Response) -> int:
    assert response.status_code == 429, response.text
    return int(response.headers["Retry-After"])


# -- the buckets ----------------------------------------------------------------------------------


def test_a_bucket_gives_its_burst_then_one_request_per_period():
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.take("ada", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("ada", 100.0) == pytest.approx(0.5)  # one token every half second
    assert limiter.take("ada", 100.5) == 0.0
    assert limiter.take("bob", 100.5) == 0.0  # another key has its own bucket


def test_a_bucket_refills_no_further_than_its_burst():
    limiter = RateLimiter(rate=1.0, burst=2)
    limiter.take("ada", 0.0)
    assert [limiter.take("ada", 1000.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]


def test_buckets_are_bounded_in_number_the_longest_unused_goes_first():
    limiter = RateLimiter(rate=1.0, burst=1, max_buckets=3)
    limiter.take("busy", 0.0)
    for i in range(1000):  # an attacker cycling through addresses
        limiter.take(f"10.0.{i // 256}.{i % 256}", 0.0)
        limiter.take("busy", 0.0)  # still refused: its bucket survives, being recently used
    assert len(limiter) == 3
    assert limiter.take("busy", 0.0) > 0


# -- per identity -------------------------------------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"rate_limit_per_identity": 0.2, "rate_limit_burst": 3}])
async def test_past_the_per_identity_rate_429_with_retry_after_and_others_unaffected(base_url):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token(user="ada"))  # initialize and initialized: 2 of 3
        assert (await http.post(url, json=PING, headers=headers(session=session))).status_code == 200
        limited = await http.post(url, json=PING, headers=headers(session=session))
        assert retry_after(limited) == 5  # one request every 5 s
        assert limited.json() == {
            "jsonrpc": "2.0",
            "id": 3,
            "error": {"code": -32600, "message": "rate limit: 0.2 requests a second per caller (burst 3)"},
        }
        # The same caller on a new session, or a stateless request, is still the same caller.
        again = await http.post(url, json=init_body(), headers=headers(token(user="ada")))
        assert retry_after(again) >= 1
        # Another caller, from the same address, is not slowed down at all.
        other = await open_session(http, url, token(user="grace"))
        assert (await http.post(url, json=PING, headers=headers(session=other))).status_code == 200


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"rate_limit_per_identity": 0.5, "rate_limit_burst": 1}])
async def test_the_per_identity_rate_counts_the_legacy_transport_too(base_url):
    async with httpx2.AsyncClient(timeout=10) as http:
        opened = headers(token(user="ada"))
        async with http.stream("GET", f"{base_url}/everything/sse", headers=opened) as first:
            assert first.status_code == 200
            async with http.stream("GET", f"{base_url}/everything/sse", headers=opened) as second:
                assert retry_after(second) == 2


# -- per client address ----------------------------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"rate_limit_per_address": 0.25, "rate_limit_burst": 2}])
async def test_past_the_per_address_rate_429_and_another_address_is_unaffected(base_url):
    url = f"{base_url}/everything/mcp"
    elsewhere = httpx2.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx2.AsyncClient() as http, httpx2.AsyncClient(transport=elsewhere) as neighbour:
        session = await open_session(http, url, token(user="ada"))  # 2 requests: the burst
        refused = await http.post(url, json=PING, headers=headers(session=session))
        assert retry_after(refused) == 4
        # Counted before the token is even looked at: another identity from that address waits too.
        assert retry_after(await http.post(url, json=init_body(), headers=headers(token(user="eve")))) >= 1
        # The same token from another address goes on.
        assert (await neighbour.post(url, json=PING, headers=headers(session=session))).status_code == 200


# -- a server's own limits ----------------------------------------------------------------------------


@pytest.fixture
def servers_dir(servers_dir: Path) -> Path:
    (servers_dir / "metered.yaml").write_text(
        "rate_limit: {per_identity: 0.1, burst: 2}\ntools:\n  - name: echo\n    handler: everything_tools:echo\n"
    )
    return servers_dir


@pytest.mark.gen_test
async def test_a_servers_rate_limit_overrides_the_gateways_for_that_server_only(base_url):
    async with httpx2.AsyncClient() as http:
        metered = f"{base_url}/metered/mcp"
        session = await open_session(http, metered, token("metered", api_key=None))
        assert retry_after(await http.post(metered, json=PING, headers=headers(session=session))) == 10
        free = f"{base_url}/everything/mcp"
        session = await open_session(http, free, token())
        for _ in range(5):
            assert (await http.post(free, json=PING, headers=headers(session=session))).status_code == 200


@pytest.mark.gen_test
async def test_nothing_is_limited_unless_a_rate_is_set(base_url):
    async with httpx2.AsyncClient() as http:
        url = f"{base_url}/everything/mcp"
        session = await open_session(http, url, token())
        for _ in range(30):
            assert (await http.post(url, json=PING, headers=headers(session=session))).status_code == 200
