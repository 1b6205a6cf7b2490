"""Inputs that once slipped through: each must get a clear 4xx (never a 500) and change nothing."""

from __future__ import annotations

import httpx2
import pytest

from tests.conftest import eventually, token
from tests.e2e.wire import headers, open_session, sse_events, stream_headers
from tests.test_admin import ADMIN


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('command: "\'unclosed"\n', "command: No closing quotation"),
        ('command: " "\n', "command: names no program"),
        ("tools:\n  - name: t\n    handler: everything_tools:echo\n    inputSchema: {$schema: [1]}\n", "not a valid"),
    ],
    ids=["bad-quoting", "empty-command", "unhashable-schema-dialect"],
)
async def test_a_strange_definition_is_a_problem_not_a_crash(base_url, servers_dir, gateway, content, problem):
    path = servers_dir / "strange.yaml"
    path.write_text(content)
    await eventually(lambda: _value(str(path) in gateway.registry.problems))
    assert problem in gateway.registry.problems[str(path)]
    async with httpx2.AsyncClient() as http:
        assert (await http.get(f"{base_url}/health")).status_code == 200
        put = await http.put(f"{base_url}/servers/strange2", content=b'{"command": " "}', headers=ADMIN)
        assert put.status_code == 400 and put.json()["error"]["field"] == "command"


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ["foo%0A", "a%2Fb", "-x", "x" * 65])
async def test_odd_names_are_400_and_write_nothing(base_url, servers_dir, name):
    before = sorted(p.name for p in servers_dir.iterdir())
    async with httpx2.AsyncClient() as http:
        response = await http.put(f"{base_url}/servers/{name}", json={"tools": []}, headers=ADMIN)
    assert response.status_code in (400, 404)
    assert sorted(p.name for p in servers_dir.iterdir()) == before


@pytest.mark.gen_test
@pytest.mark.parametrize("last_event_id", ["²".encode("latin-1"), b"9" * 5000, b"-1", b"abc", b"99999"])
async def test_any_last_event_id_opens_a_stream(base_url, last_event_id):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token())
        get_headers = stream_headers(session, last_event_id)
        async with http.stream("GET", url, headers=get_headers) as stream:
            assert stream.status_code == 200


@pytest.mark.gen_test
async def test_a_batch_that_turns_into_sse_keeps_every_answer(base_url):
    url = f"{base_url}/everything/mcp"
    slow = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "slow", "arguments": {"steps": 2}, "_meta": {"progressToken": "p"}},
    }
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token(), version="2025-03-26")
        batch = [{"jsonrpc": "2.0", "id": 1, "method": "ping"}, slow]
        response = await http.post(url, json=batch, headers=headers(session=session, version="2025-03-26"))
    answered = {e["data"]["id"] for e in sse_events(response.text) if "id" in e["data"]}
    assert answered == {1, 2}


@pytest.mark.gen_test
async def test_a_cursor_we_never_gave_is_invalid_params(base_url):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token())
        for cursor in ("²", "9" * 5000, "-100", "17"):
            body = {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"cursor": cursor}}
            response = await http.post(url, json=body, headers=headers(session=session))
            assert response.json()["error"]["code"] == -32602, cursor


@pytest.mark.gen_test
async def test_revoking_a_key_ends_the_sessions_it_opened(base_url, servers_dir):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token(api_key="plain-key"))
        path = servers_dir / "everything.yaml"
        path.write_text(path.read_text().replace("  - plain-key\n", ""))
        body = {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}

        async def refused() -> bool:
            response = await http.post(url, json=body, headers=headers(session=session))
            return response.status_code == 404

        await eventually(refused, message="a session opened with a revoked key kept working")


@pytest.mark.gen_test
async def test_requests_without_a_token_never_start_a_lazy_child(base_url, gateway):
    async with httpx2.AsyncClient() as http:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        response = await http.post(f"{base_url}/child/mcp", json=init, headers=headers())
        assert response.status_code == 401
        garbage = await http.post(f"{base_url}/child/mcp", content=b"x", headers={"Content-Type": "text/plain"})
        assert garbage.status_code == 415
    assert gateway.registry.get("child").backend.describe()["state"] == "stopped"


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"session_idle_timeout": 0.2, "session_cleanup_interval": 0.05}])
async def test_a_listening_session_is_not_idle(base_url, gateway):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token())
        get_headers = stream_headers(session)
        async with http.stream("GET", url, headers=get_headers) as stream:
            assert stream.status_code == 200
            hosted = gateway.registry.get("everything")
            for _ in range(3):  # several reaper runs pass while the client listens
                await hosted.reap(0.2)
            assert hosted.sessions.get(session) is not None
        await eventually(lambda: _value(hosted.sessions.get(session) is None), message="never reaped once idle")


async def _value(value: object) -> object:
    return value
