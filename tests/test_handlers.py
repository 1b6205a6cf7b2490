"""Handler-level rules (statuses, headers, error bodies) with pytest-tornado's fixtures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import tornado.ioloop
import tornado.web

from mcp_tornado import auth
from mcp_tornado.app import make_app
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.settings import Settings
from tests.conftest import SECRET, TEST_ENVIRON, token
from tests.e2e.wire import headers, init_body


@pytest.fixture
def app(io_loop: tornado.ioloop.IOLoop, servers_dir: Path) -> Iterator[tornado.web.Application]:
    settings = Settings.from_environ(
        {"JWT_SECRET": SECRET, **TEST_ENVIRON}, servers_dir=servers_dir, max_body_bytes=64 * 1024
    )
    registry = ServerRegistry(settings)
    io_loop.run_sync(registry.load_all)
    yield make_app(settings, registry)
    io_loop.run_sync(registry.stop)


@pytest.fixture
def base_url(http_server, http_port: int) -> str:
    """pytest-tornado's server on `app` (conftest's `base_url` would start a whole gateway)."""
    return f"http://127.0.0.1:{http_port}"


async def post(http_client, base_url, body, path="/everything/mcp", **kw):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http_client.fetch(f"{base_url}{path}", method="POST", body=data, raise_error=False, **kw)


async def session_of(http_client, base_url) -> str:
    response = await post(http_client, base_url, init_body(), headers=headers(token()))
    assert response.code == 200
    return response.headers["Mcp-Session-Id"]


ECHO = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "x"}}}


@pytest.mark.gen_test
async def test_initialize_without_a_token_is_401_with_a_bearer_challenge(http_client, base_url):
    response = await post(http_client, base_url, init_body(), headers=headers())
    assert response.code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(response.body)["error"]["code"] == -32600


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "bearer",
    [
        "garbage",
        auth.mint("another-secret-of-the-same-good-length", server_name="everything", api_key="plain-key"),
        auth.mint(SECRET, server_name="everything", api_key="plain-key", ttl=-60),
    ],
    ids=["malformed", "badly-signed", "expired"],
)
async def test_bad_tokens_are_401(http_client, base_url, bearer):
    response = await post(http_client, base_url, init_body(), headers=headers(bearer))
    assert response.code == 401
    assert "Bearer" in response.headers["WWW-Authenticate"]


@pytest.mark.gen_test
async def test_unsigned_token_is_refused(http_client, base_url):
    import jwt

    unsigned = jwt.encode({"serverName": "everything", "apiKey": "plain-key"}, key=None, algorithm="none")
    response = await post(http_client, base_url, init_body(), headers=headers(unsigned))
    assert response.code == 401


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("bearer", "expected"),
    [
        (token("other"), 403),
        (token(api_key="wrong"), 403),
        (token(api_key=None), 403),
        (token(api_key="secret"), 200),  # matches the sha256 entry
        (auth.mint(SECRET, admin=True), 403),
    ],
    ids=["other-server", "wrong-key", "no-key", "hashed-key", "admin-token"],
)
async def test_tokens_open_only_their_server(http_client, base_url, bearer, expected):
    response = await post(http_client, base_url, init_body(), headers=headers(bearer))
    assert response.code == expected


@pytest.mark.gen_test
async def test_unknown_server_is_404(http_client, base_url):
    response = await post(http_client, base_url, init_body(), path="/nobody/mcp", headers=headers(token("nobody")))
    assert response.code == 404
    assert json.loads(response.body)["error"]["message"]


@pytest.mark.gen_test
async def test_missing_session_id_is_400_and_unknown_is_404(http_client, base_url):
    assert (await post(http_client, base_url, ECHO, headers=headers())).code == 400
    assert (await post(http_client, base_url, ECHO, headers=headers(session="no-such-session"))).code == 404


@pytest.mark.gen_test
@pytest.mark.parametrize("version", ["2099-01-01", "nonsense", "2026-07-28x"])
async def test_unsupported_protocol_version_header_is_400(http_client, base_url, version):
    session = await session_of(http_client, base_url)
    response = await post(http_client, base_url, ECHO, headers=headers(session=session, version=version))
    assert response.code == 400


@pytest.mark.gen_test
async def test_wrong_accept_is_406_and_wrong_content_type_is_415(http_client, base_url):
    session = await session_of(http_client, base_url)
    only_json = {**headers(session=session), "Accept": "application/json"}
    assert (await post(http_client, base_url, ECHO, headers=only_json)).code == 406
    as_text = {**headers(session=session), "Content-Type": "text/plain"}
    assert (await post(http_client, base_url, ECHO, headers=as_text)).code == 415
    get = await http_client.fetch(
        f"{base_url}/everything/mcp",
        headers={"Mcp-Session-Id": session, "Accept": "application/json"},
        raise_error=False,
    )
    assert get.code == 406


@pytest.mark.gen_test
async def test_malformed_json_is_a_parse_error(http_client, base_url):
    session = await session_of(http_client, base_url)
    response = await post(http_client, base_url, b'{"jsonrpc": "2.0", "id": 1,', headers=headers(session=session))
    assert response.code == 400
    assert json.loads(response.body)["error"]["code"] == -32700


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "body",
    [{"jsonrpc": "1.0", "id": 1, "method": "ping"}, {"id": 1}, [], 42, {"jsonrpc": "2.0", "id": 1, "method": 5}],
    ids=["wrong-version", "no-method", "empty-batch", "number", "method-not-string"],
)
async def test_invalid_jsonrpc_is_invalid_request(http_client, base_url, body):
    session = await session_of(http_client, base_url)
    response = await post(http_client, base_url, body, headers=headers(session=session))
    assert response.code == 400
    assert json.loads(response.body)["error"]["code"] == -32600


@pytest.mark.gen_test
async def test_unknown_method_is_method_not_found(http_client, base_url):
    session = await session_of(http_client, base_url)
    body = {"jsonrpc": "2.0", "id": 9, "method": "no/such/method"}
    response = await post(http_client, base_url, body, headers=headers(session=session))
    assert response.code == 200
    assert json.loads(response.body)["error"]["code"] == -32601


@pytest.mark.gen_test
@pytest.mark.parametrize("size", [70_000, 300_000])
async def test_body_over_the_limit_is_413(http_client, base_url, size):
    session = await session_of(http_client, base_url)
    big = {**ECHO, "params": {"name": "echo", "arguments": {"message": "x" * size}}}
    response = await post(http_client, base_url, big, headers=headers(session=session))
    assert response.code == 413
    assert json.loads(response.body)["error"]["message"] == "body over 65536 bytes"


@pytest.mark.gen_test
async def test_a_chunked_body_over_the_limit_is_413(http_client, base_url):
    session = await session_of(http_client, base_url)
    big = json.dumps({**ECHO, "params": {"name": "echo", "arguments": {"message": "x" * 70_000}}}).encode()

    async def producer(write):
        for start in range(0, len(big), 8192):
            await write(big[start : start + 8192])

    response = await http_client.fetch(
        f"{base_url}/everything/mcp",
        method="POST",
        body_producer=producer,
        headers=headers(session=session),
        raise_error=False,
    )
    assert response.code == 413


@pytest.mark.gen_test
async def test_health_reveals_no_secrets(http_client, base_url):
    await session_of(http_client, base_url)
    response = await http_client.fetch(f"{base_url}/health")
    body = response.body.decode()
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["servers"]["everything"] == {"state": "running", "kind": "inprocess", "sessions": 1}
    for secret in ("plain-key", "sha256", "2bb80d53", SECRET):
        assert secret not in body


@pytest.mark.gen_test
async def test_metrics_count_requests_and_show_sessions(http_client, base_url):
    await session_of(http_client, base_url)
    await post(http_client, base_url, ECHO, path="/nobody/mcp", headers=headers(session="x"))
    response = await http_client.fetch(f"{base_url}/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.body.decode()
    assert 'mcp_tornado_http_requests_total{method="POST",server="everything",status="200"} 1.0' in text
    assert 'mcp_tornado_http_requests_total{method="POST",server="(unknown)",status="404"} 1.0' in text
    assert 'mcp_tornado_sessions{kind="inprocess",server="everything"} 1.0' in text
    assert "plain-key" not in text


@pytest.mark.gen_test
async def test_status_page_lists_servers(http_client, base_url):
    response = await http_client.fetch(f"{base_url}/")
    assert b"/everything/mcp" in response.body


@pytest.mark.gen_test
async def test_unknown_paths_are_404_json(http_client, base_url):
    response = await http_client.fetch(f"{base_url}/nope/deeper", raise_error=False)
    assert response.code == 404
    assert json.loads(response.body)["error"]["code"] == 404


@pytest.mark.gen_test
async def test_dns_rebinding_is_refused_on_loopback(http_client, base_url):
    evil_host = {**headers(token()), "Host": "evil.example.com"}
    assert (await post(http_client, base_url, init_body(), headers=evil_host)).code == 421
    evil_origin = {**headers(token()), "Origin": "http://evil.example.com"}
    response = await post(http_client, base_url, init_body(), headers=evil_origin)
    assert response.code == 403
    assert json.loads(response.body)["error"]["message"] == "Origin not allowed"
    local_origin = {**headers(token()), "Origin": "http://localhost:6274"}  # e.g. the MCP Inspector
    assert (await post(http_client, base_url, init_body(), headers=local_origin)).code == 200
