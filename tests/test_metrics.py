"""`GET /metrics` scraped after real traffic: latency histograms per server and JSON-RPC method,
session and GET-stream gauges, reload and restart counters (parsed with prometheus_client)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcp_tornado.telemetry import STREAM
from tests.conftest import eventually, mcp_client, token
from tests.e2e.wire import headers, open_session, stream_headers

LATENCY = "mcp_tornado_request_duration_seconds"


async def scrape(base_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of `/metrics`: (name, labels) -> value."""
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{base_url}/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def latency(server: str, rpc_method: str, method: str = "POST", status: str = "2xx") -> dict[str, str]:
    return {"server": server, "method": method, "rpc_method": rpc_method, "status": status}


@pytest.mark.gen_test(timeout=30)
async def test_the_latency_histogram_counts_each_request_under_its_server_and_method(base_url):
    async with mcp_client(f"{base_url}/everything/mcp") as client:
        for i in range(3):
            await client.call_tool("echo", {"message": f"m{i}"})
        samples = await scrape(base_url)
    calls = latency("everything", "tools/call")
    assert value(samples, f"{LATENCY}_count", **calls) == 3
    assert value(samples, f"{LATENCY}_bucket", **calls, le="+Inf") == 3
    assert 0 < value(samples, f"{LATENCY}_sum", **calls) < 3  # type: ignore[operator]
    assert value(samples, f"{LATENCY}_bucket", **calls, le="60.0") == 3
    assert value(samples, f"{LATENCY}_count", **latency("everything", "initialize")) == 1
    assert value(samples, f"{LATENCY}_count", **latency("everything", "notifications/initialized")) == 1
    assert value(samples, f"{LATENCY}_count", **latency("other", "tools/call")) is None
    # The counter that was there before the histogram counts the same requests.
    assert value(samples, "mcp_tornado_http_requests_total", server="everything", method="POST", status="200") >= 4  # type: ignore[operator]


@pytest.mark.gen_test(timeout=30)
async def test_labels_stay_bounded_whatever_a_client_sends(base_url):
    async with httpx2.AsyncClient() as http:
        url = f"{base_url}/everything/mcp"
        session = await open_session(http, url, token())
        odd = {"jsonrpc": "2.0", "id": 7, "method": "made/up-by-a-scanner", "params": {}}
        assert (await http.post(url, json=odd, headers=headers(session=session))).status_code == 200
        nobody = await http.post(f"{base_url}/nobody-here/mcp", json=odd, headers=headers(token()))
        assert nobody.status_code == 404
        for made_up in ("FOOA", "FOOB", "FOOC"):  # methods Tornado answers 405 for
            assert (await http.request(made_up, url)).status_code == 405
    samples = await scrape(base_url)
    assert value(samples, f"{LATENCY}_count", **latency("(unknown)", "(none)", method="(other)", status="4xx")) == 3
    assert not any("FOO" in str(labels) for _, labels in samples)
    assert value(samples, f"{LATENCY}_count", **latency("everything", "(other)")) == 1
    assert value(samples, f"{LATENCY}_count", **latency("(unknown)", "made/up-by-a-scanner", status="4xx")) is None
    assert value(samples, f"{LATENCY}_count", **latency("(unknown)", "(none)", status="4xx")) == 1  # never read
    assert not any("made/up" in str(labels) or "nobody-here" in str(labels) for _, labels in samples)


@pytest.mark.gen_test(timeout=30)
async def test_session_and_get_stream_gauges_follow_live_sessions(base_url):
    def gauges(samples):
        labels = {"server": "everything", "kind": "inprocess"}
        return value(samples, "mcp_tornado_sessions", **labels), value(samples, "mcp_tornado_get_streams", **labels)

    assert gauges(await scrape(base_url)) == (0, 0)
    async with httpx2.AsyncClient() as http:
        await open_session(http, f"{base_url}/everything/mcp", token())  # a session without a GET stream
        async with mcp_client(f"{base_url}/everything/mcp"):  # the SDK client opens its GET stream itself

            async def one_stream_two_sessions():
                return gauges(await scrape(base_url)) == (2, 1)

            await eventually(one_stream_two_sessions, message="expected 2 sessions and 1 GET stream")

        async def stream_gone():  # the client ends its session on the way out
            return gauges(await scrape(base_url)) == (1, 0)

        await eventually(stream_gone, message="expected the closed client's session and stream gone")


@pytest.mark.gen_test(timeout=30)
async def test_a_get_stream_is_observed_once_it_ends_with_its_whole_life(base_url):
    # The stream outlives its handler (its response holds the connection): it is counted at its end.
    stream = latency("everything", STREAM, method="GET")
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token())
        get = {**stream_headers(session), "Authorization": f"Bearer {token()}"}
        async with http.stream("GET", url, headers=get) as response:
            assert response.status_code == 200
            await asyncio.sleep(0.3)  # the stream's life: what the histogram must see, not a wait for an event
            assert value(await scrape(base_url), f"{LATENCY}_count", **stream) is None  # still open
        await http.delete(url, headers={**get, "MCP-Protocol-Version": "2025-11-25"})

    async def counted() -> float | None:
        return value(await scrape(base_url), f"{LATENCY}_count", **stream)

    assert await eventually(counted, message="the ended GET stream was never observed") == 1
    samples = await scrape(base_url)
    assert 0.3 <= value(samples, f"{LATENCY}_sum", **stream) < 10  # type: ignore[operator]
    assert value(samples, "mcp_tornado_http_requests_total", server="everything", method="GET", status="200") == 1


@pytest.mark.gen_test(timeout=30)
async def test_reloads_are_counted_applied_and_failed(base_url, servers_dir: Path):
    samples = await scrape(base_url)
    assert value(samples, "mcp_tornado_reloads_total", server="everything", result="applied") == 1
    definition = servers_dir / "added.yaml"
    definition.write_text((servers_dir / "other.yaml").read_text())

    async def counted(result: str, expected: float):
        return value(await scrape(base_url), "mcp_tornado_reloads_total", server="added", result=result) == expected

    await eventually(lambda: counted("applied", 1), message="the new file was not counted as applied")
    definition.write_text("tools: [oops\n")
    await eventually(lambda: counted("failed", 1), message="the broken file was not counted as failed")
    samples = await scrape(base_url)
    assert value(samples, "mcp_tornado_reloads_total", server="added", result="applied") == 1
    assert value(samples, "mcp_tornado_definition_problems") == 1


@pytest.mark.gen_test(timeout=60)
async def test_a_restarted_child_moves_the_restart_counter(base_url):
    labels = {"server": "child", "kind": "command"}
    async with mcp_client(f"{base_url}/child/mcp", token("child", api_key=None)) as client:
        result = await client.call_tool("pid", {})
        assert value(await scrape(base_url), "mcp_tornado_backend_restarts_total", **labels) == 0
        assert value(await scrape(base_url), "mcp_tornado_server_up", **labels) == 1
        os.kill(int(result.content[0].text), signal.SIGKILL)  # type: ignore[union-attr]

    async def restarted():
        samples = await scrape(base_url)
        return value(samples, "mcp_tornado_backend_restarts_total", **labels) == 1 and value(
            samples, "mcp_tornado_server_up", **labels
        )

    await eventually(restarted, timeout=20, message="the child's restart was not counted")
