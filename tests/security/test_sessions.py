"""Issue [7], identity binds a session: a later token must be the session's identity, and the
per-user cap buckets sessions per identity, never pooling callers it cannot tell apart.

Each test names the rule it guards. The tokens are signed here (with `sub` and `jti` where a
test needs them), as an authorization server would sign them.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest

from tests.conftest import SECRET
from tests.e2e.wire import headers, init_body, open_session

_JTI = itertools.count(1)


def bearer(server: str = "everything", **claims: Any) -> str:
    """A token for `server` with exactly `claims` (plus the times), signed with the test secret."""
    now = int(time.time())
    payload = {"serverName": server, "iat": now, "exp": now + 600, "jti": f"t{next(_JTI)}", **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, SECRET, algorithm="HS256")


def call(request_id: int = 2) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "x"}},
    }


# -- a later token must speak for the session's identity -----------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("opened_with", "later"),
    [
        pytest.param({"apiKey": "plain-key"}, {"apiKey": "secret"}, id="apiKey"),
        pytest.param({"apiKey": "plain-key", "sub": "alice"}, {"apiKey": "plain-key", "sub": "bob"}, id="sub"),
        pytest.param({"apiKey": "plain-key", "userId": "ada"}, {"apiKey": "plain-key", "userId": "eve"}, id="userId"),
    ],
)
async def test_a_later_token_for_another_identity_is_refused(base_url, opened_with, later):
    """Both tokens are valid for the server (both keys are among its api_keys); only the
    identity differs, and that alone is a 403."""
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, bearer(**opened_with))
        refused = await http.post(url, json=call(), headers=headers(bearer(**later), session=session))
        assert refused.status_code == 403, refused.text
        assert "another identity" in refused.json()["error"]["message"]
        same = await http.post(url, json=call(3), headers=headers(bearer(**opened_with), session=session))
        assert same.status_code == 200, same.text  # a fresh token of the same identity is fine


@pytest.mark.gen_test
async def test_a_later_token_with_a_claim_the_session_lacked_is_another_identity(base_url):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, bearer(apiKey="plain-key"))
        refused = await http.post(
            url, json=call(), headers=headers(bearer(apiKey="plain-key", sub="x"), session=session)
        )
        assert refused.status_code == 403


@pytest.mark.gen_test
async def test_the_legacy_transport_binds_its_session_to_the_identity_too(base_url):
    opened = bearer(apiKey="plain-key", sub="alice")
    async with httpx2.AsyncClient(timeout=10) as http:
        async with http.stream(
            "GET", f"{base_url}/everything/sse", headers={"Authorization": f"Bearer {opened}"}
        ) as sse:
            lines = sse.aiter_lines()  # held, not left: a dropped line iterator closes the stream
            endpoint = ""
            while not endpoint:
                line = await anext(lines)
                endpoint = line[5:].strip() if line.startswith("data:") else ""
            assert endpoint.startswith("/everything/messages?session_id=")
            other = bearer(apiKey="plain-key", sub="bob")
            refused = await http.post(
                base_url + endpoint, json=init_body(), headers={"Authorization": f"Bearer {other}"}
            )
            assert refused.status_code == 403, refused.text
            assert "another identity" in refused.json()["error"]["message"]


# -- buckets under the per-user cap ----------------------------------------------------------------

SAY = call()


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"max_sessions_per_user": 2}])
@pytest.mark.parametrize(
    ("greedy", "bystander"),
    [
        pytest.param({"sub": "mallory"}, {"sub": "alice"}, id="by-subject"),
        pytest.param({}, {}, id="no-claims-at-all"),
    ],
)
async def test_callers_without_user_id_are_never_pooled(base_url, greedy, bystander):
    """The `other` server has no api_keys: both callers come without userId and apiKey. The
    greedy one opens sessions past the per-user cap and only ever evicts its own."""
    url = f"{base_url}/other/mcp"
    ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
    async with httpx2.AsyncClient() as http:
        kept = await open_session(http, url, bearer("other", **bystander))
        greedy_token = bearer("other", **greedy)
        mine = [await open_session(http, url, greedy_token) for _ in range(3)]
        assert (await http.post(url, json=ping, headers=headers(session=kept))).status_code == 200
        assert (await http.post(url, json=ping, headers=headers(session=mine[0]))).status_code == 404  # its own
        assert (await http.post(url, json=ping, headers=headers(session=mine[2]))).status_code == 200


@pytest.fixture
def servers_dir(servers_dir: Path) -> Path:
    (servers_dir / "open.yaml").write_text(
        "auth: none\ntools:\n  - name: echo\n    handler: everything_tools:echo\n"
        "    inputSchema: {type: object, properties: {message: {type: string}}, required: [message]}\n"
    )
    return servers_dir


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"max_sessions_per_user": 2}])
async def test_anonymous_sessions_of_a_public_server_are_bucketed_by_client_address(base_url):
    url = f"{base_url}/open/mcp"
    ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
    elsewhere = httpx2.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx2.AsyncClient() as http, httpx2.AsyncClient(transport=elsewhere) as neighbour:
        kept = await open_session(neighbour, url, "")
        mine = [await open_session(http, url, "") for _ in range(3)]
        assert (await neighbour.post(url, json=ping, headers=headers(session=kept))).status_code == 200
        assert (await http.post(url, json=ping, headers=headers(session=mine[0]))).status_code == 404
        assert (await http.post(url, json=ping, headers=headers(session=mine[2]))).status_code == 200
