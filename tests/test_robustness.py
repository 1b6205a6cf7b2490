"""Inputs that once slipped through: each must get a clear 4xx (never a 500) and change nothing."""

from __future__ import annotations

import httpx2
import pytest

from tests.conftest import eventually, token
from tests.e2e.wire import headers, init_body, open_session, read_events, sse_events, stream_headers
from tests.test_admin import ADMIN


@pytest.mark.gen_test(timeout=15)
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('command: "\'unclosed"\n', "command: No closing quotation"),
        ('command: " "\n', "command: names no program"),
        ("tools:\n  - name: t\n    handler: everything_tools:echo\n    inputSchema: {$schema: [1]}\n", "not a valid"),
    ],
    ids=["bad-quoting", "empty-command", "unhashable-schema-dialect"],
)
async def test_a_strange_definition_is_a_problem_not_a_crash(base_url, servers_dir, content, problem):
    path = servers_dir / "strange.yaml"
    path.write_text(content)
    async with httpx2.AsyncClient() as http:

        async def failing() -> list[dict]:
            listed = (await http.get(f"{base_url}/servers", headers=ADMIN)).json()
            return [f for f in listed["failing"] if f["source"] == str(path)]

        [reported] = await eventually(failing, message="the strange definition was never reported")
        assert reported["last_error"].startswith(f"{path}:") and problem in reported["last_error"]
        health = await http.get(f"{base_url}/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert "strange" not in health.json()["servers"] and health.json()["problems"] == 1
        put = await http.put(f"{base_url}/servers/strange2", content=b'{"command": " "}', headers=ADMIN)
        assert put.status_code == 400
        assert put.json()["error"] == {"code": 400, "message": "command: names no program", "field": "command"}
        assert (await http.get(f"{base_url}/servers/strange2", headers=ADMIN)).status_code == 404
    assert not (servers_dir / "strange2.yaml").exists()


NAME_RULE = "name: must match [A-Za-z0-9][A-Za-z0-9_-]{0,63}"


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("name", "status", "error"),
    [
        # Tornado matches routes on the raw path and decodes the captured name afterwards, so
        # escapes reach the handler (as "foo\n", "a/b"), whose name rule refuses them.
        ("foo%0A", 400, {"code": 400, "message": NAME_RULE, "field": "name"}),
        ("a%2Fb", 400, {"code": 400, "message": NAME_RULE, "field": "name"}),
        ("-x", 400, {"code": 400, "message": NAME_RULE, "field": "name"}),
        ("x" * 65, 400, {"code": 400, "message": NAME_RULE, "field": "name"}),
        # A real slash is two path segments: no route, the handler never runs.
        ("a/b", 404, {"code": 404, "message": "no route for /servers/a/b"}),
    ],
    ids=["newline", "escaped-slash", "leading-dash", "too-long", "slash"],
)
async def test_odd_names_are_refused_and_write_nothing(base_url, servers_dir, name, status, error):
    before = sorted(p.name for p in servers_dir.iterdir())
    async with httpx2.AsyncClient() as http:
        servers_before = (await http.get(f"{base_url}/servers", headers=ADMIN)).json()
        response = await http.put(f"{base_url}/servers/{name}", json={"tools": []}, headers=ADMIN)
        assert response.status_code == status, response.text
        assert response.json() == {"error": error}
        assert (await http.get(f"{base_url}/servers", headers=ADMIN)).json() == servers_before
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
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            announce = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "announce"}}
            assert (await http.post(url, json=announce, headers=headers(session=session))).status_code == 200
            # Nothing was replayed for an id we never gave: the first event is the one just sent.
            [event] = await read_events(stream, 1)
            assert event["data"] == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}


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
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    answers = {e["data"]["id"]: e["data"] for e in sse_events(response.text) if "id" in e["data"]}
    assert answers == {
        1: {"jsonrpc": "2.0", "id": 1, "result": {}},
        2: {
            "jsonrpc": "2.0",
            "id": 2,
            "result": {"content": [{"type": "text", "text": "done 2 steps"}], "isError": False},
        },
    }


@pytest.mark.gen_test
async def test_a_cursor_we_never_gave_is_invalid_params(base_url):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token())
        for cursor in ("²", "9" * 5000, "-100", "17"):
            body = {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"cursor": cursor}}
            response = await http.post(url, json=body, headers=headers(session=session))
            assert response.status_code == 200, cursor
            assert response.json() == {
                "jsonrpc": "2.0",
                "id": 3,
                "error": {"code": -32602, "message": "Invalid cursor"},
            }
        first_page = {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}
        listed = await http.post(url, json=first_page, headers=headers(session=session))
        assert "echo" in {t["name"] for t in listed.json()["result"]["tools"]}


@pytest.mark.gen_test(timeout=15)
async def test_revoking_a_key_ends_the_sessions_it_opened(base_url, servers_dir):
    url = f"{base_url}/everything/mcp"
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token(api_key="plain-key"))
        path = servers_dir / "everything.yaml"
        path.write_text(path.read_text().replace("  - plain-key\n", ""))
        body = {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}

        async def refused() -> httpx2.Response | None:
            response = await http.post(url, json=body, headers=headers(session=session))
            return response if response.status_code == 404 else None

        response = await eventually(refused, message="a session opened with a revoked key kept working")
        assert response.json()["error"] == {"code": -32600, "message": "unknown or ended session"}
        again = await http.post(url, json=init_body(), headers=headers(token(api_key="plain-key")))
        assert again.status_code == 403
        assert again.json()["error"] == {"code": -32600, "message": "API key not accepted by this server"}
        health = (await http.get(f"{base_url}/health")).json()
        assert health["servers"]["everything"]["sessions"] == 0


@pytest.mark.gen_test
async def test_requests_without_a_token_never_start_a_lazy_child(base_url):
    async with httpx2.AsyncClient() as http:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        response = await http.post(f"{base_url}/child/mcp", json=init, headers=headers())
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["error"] == {
            "code": -32600,
            "message": "a Bearer token is required: this server needs a bearer token from its operator "
            "(mcp-tornado token child)",
        }
        garbage = await http.post(f"{base_url}/child/mcp", content=b"x", headers={"Content-Type": "text/plain"})
        assert garbage.status_code == 415
        assert garbage.json()["error"] == {"code": -32600, "message": "Content-Type must be application/json"}
        child = (await http.get(f"{base_url}/servers/child", headers=ADMIN)).json()
    assert (child["state"], child["sessions"], child["restarts"]) == ("stopped", 0, 0)


@pytest.mark.gen_test(timeout=15)
@pytest.mark.parametrize("settings_overrides", [{"session_idle_timeout": 0.2, "session_cleanup_interval": 0.05}])
async def test_a_listening_session_is_not_idle(base_url):
    url = f"{base_url}/everything/mcp"
    ping = {"jsonrpc": "2.0", "id": 5, "method": "ping"}
    async with httpx2.AsyncClient(timeout=10) as http:

        async def sessions() -> int:
            return (await http.get(f"{base_url}/health")).json()["servers"]["everything"]["sessions"]

        listening = await open_session(http, url, token())
        async with http.stream("GET", url, headers=stream_headers(listening)) as stream:
            assert stream.status_code == 200
            idle = await open_session(http, url, token())  # opened later: it would be reaped last
            # The idle one is reaped (so the idle timeout passed, and the reaper ran) ...
            await eventually(lambda: _equal(sessions(), 1), message="the idle session was never reaped")
            assert (await http.post(url, json=ping, headers=headers(session=idle))).status_code == 404
            # ... while the one its client listens on lives on.
            alive = await http.post(url, json=ping, headers=headers(session=listening))
            assert alive.status_code == 200 and alive.json()["result"] == {}
        await eventually(lambda: _equal(sessions(), 0), message="never reaped once idle")
        assert (await http.post(url, json=ping, headers=headers(session=listening))).status_code == 404


async def _equal(awaitable, expected: object) -> bool:
    return await awaitable == expected
