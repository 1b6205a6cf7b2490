"""`tool_scopes:` on a `url:` upstream that itself speaks the stateless 2026-07-28 revision.

Such an upstream's requests are passed through as they are (backends/relay.py), but only while
nothing needs hiding from its answer: a caller whose token lacks a tool's scopes must be served
by the gateway itself, so that its `tools/list` leaves that tool out, as on every other backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.test_remote import Upstream
from tests.e2e.test_stateless import envelope, modern_headers
from tests.security.test_sessions import bearer


@pytest.fixture
def scoped_upstream(servers_dir: Path) -> Iterator[Upstream]:
    up = Upstream()
    up.start()
    (servers_dir / "remote.yaml").write_text(
        f"url: {up.url}\nstart: lazy\ntimeout: 5\ntool_scopes: {{shout: [loud]}}\n"
    )
    yield up
    up.stop()


def listing(scope: str | None) -> tuple[dict, dict[str, str]]:
    return envelope("tools/list"), modern_headers("tools/list", bearer("remote", scope=scope, sub="sam"))


def shouting(scope: str | None, text: str) -> tuple[dict, dict[str, str]]:
    body = envelope("tools/call", {"name": "shout", "arguments": {"text": text}}, request_id=2)
    return body, modern_headers("tools/call", bearer("remote", scope=scope, sub="sam"), "shout")


@pytest.mark.gen_test(timeout=40)
async def test_a_relayed_upstream_hides_the_tools_a_stateless_caller_lacks_scopes_for(
    scoped_upstream, base_url, gateway
):
    await scoped_upstream.wait_listening()
    await gateway.registry.load_file(gateway.settings.servers_dir / "remote.yaml")
    url = f"{base_url}/remote/mcp"
    async with httpx2.AsyncClient(timeout=20) as http:
        # The upstream speaks 2026-07-28 itself, so requests to it may be passed through as they are.
        authorized = {"Authorization": f"Bearer {bearer('remote', scope='loud', sub='sam')}"}
        async with httpx2.AsyncClient(headers=authorized, timeout=20) as client_http:
            async with Client(streamable_http_client(url, http_client=client_http), mode="auto") as client:
                assert client.protocol_version == "2026-07-28"

        # Without the scope: the tool is not listed, and calling it is refused as on the MCP routes.
        body, sent = listing(None)
        listed = await http.post(url, json=body, headers=sent)
        assert listed.status_code == 200, listed.text
        assert [tool["name"] for tool in listed.json()["result"]["tools"]] == ["upstream_pid"]
        body, sent = shouting(None, "hi")
        refused = await http.post(url, json=body, headers=sent)
        assert refused.status_code == 403, refused.text
        assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
        assert 'scope="loud"' in refused.headers["WWW-Authenticate"]
        assert refused.json()["error"]["message"] == "tool 'shout' needs a token with scope loud"

        # With it: the tool is listed and called.
        body, sent = listing("loud")
        listed = await http.post(url, json=body, headers=sent)
        assert listed.status_code == 200, listed.text
        assert {tool["name"] for tool in listed.json()["result"]["tools"]} == {"upstream_pid", "shout"}
        body, sent = shouting("loud", "hi")
        called = await http.post(url, json=body, headers=sent)
        assert called.status_code == 200, called.text
        assert called.json()["result"]["content"][0]["text"] == "HI"
