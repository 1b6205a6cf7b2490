"""The transport's rules, read off the wire with a raw HTTP client."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from mcp_tornado import auth
from tests.conftest import SECRET, eventually, token
from tests.e2e.wire import headers, init_body, open_session, read_events, sse_events, stream_headers


@pytest.fixture
def url(base_url: str) -> str:
    return f"{base_url}/everything/mcp"


def call(name: str, arguments: dict | None = None, request_id: int = 2) -> dict:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments or {}},
    }


@pytest.mark.gen_test
@pytest.mark.parametrize("version", HANDSHAKE_PROTOCOL_VERSIONS)
async def test_every_handshake_revision_negotiates(url, version):
    async with httpx2.AsyncClient() as http:
        response = await http.post(url, json=init_body(version), headers=headers(token()))
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["result"]["protocolVersion"] == version
        session = response.headers["Mcp-Session-Id"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await http.post(url, json=note, headers=headers(session=session, version=version))
        echoed = await http.post(
            url, json=call("echo", {"message": version}), headers=headers(session=session, version=version)
        )
        assert echoed.json()["result"]["content"][0]["text"] == version


@pytest.mark.gen_test
async def test_session_ids_are_long_random_visible_ascii(url):
    async with httpx2.AsyncClient() as http:
        ids = {await open_session(http, url, token()) for _ in range(3)}
    assert len(ids) == 3
    for session_id in ids:
        assert len(session_id) >= 32  # 32 url-safe base64 characters carry 192 bits
        assert all(0x21 <= ord(c) <= 0x7E for c in session_id)


@pytest.mark.gen_test
async def test_notifications_and_responses_get_202(url):
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token())
        note = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
        assert (await http.post(url, json=note, headers=headers(session=session))).status_code == 202
        stray = {"jsonrpc": "2.0", "id": "nobody-asked", "result": {}}
        assert (await http.post(url, json=stray, headers=headers(session=session))).status_code == 202


@pytest.mark.gen_test
async def test_a_call_that_sends_progress_switches_to_sse(url):
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token())
        body = call("slow", {"steps": 2})
        body["params"]["_meta"] = {"progressToken": "p1"}
        response = await http.post(url, json=body, headers=headers(session=session))
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(response.text)
        methods = [e["data"].get("method") for e in events]
        assert methods.count("notifications/progress") == 2
        assert events[-1]["data"]["id"] == 2 and "result" in events[-1]["data"]
        assert all(e["id"] for e in events)


@pytest.mark.gen_test
async def test_delete_ends_the_session(url):
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token())
        assert (await http.delete(url, headers=headers(session=session))).status_code == 200
        after = await http.post(url, json=call("echo", {"message": "x"}), headers=headers(session=session))
        assert after.status_code == 404
        assert after.json()["error"]["code"] == -32600


@pytest.mark.gen_test
async def test_get_stream_resumes_after_last_event_id(url):
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token())
        get_headers = stream_headers(session)
        async with http.stream("GET", url, headers=get_headers) as stream:
            assert stream.status_code == 200
            await http.post(url, json=call("announce"), headers=headers(session=session))
            first = await read_events(stream, 1)
        assert first[0]["data"]["method"] == "notifications/tools/list_changed"
        # Disconnected: these two are buffered for the session.
        for request_id in (3, 4):
            await http.post(url, json=call("announce", request_id=request_id), headers=headers(session=session))
        resumed_headers = stream_headers(session, first[0]["id"])
        async with http.stream("GET", url, headers=resumed_headers) as stream:
            missed = await read_events(stream, 2)
        assert [e["data"]["method"] for e in missed] == ["notifications/tools/list_changed"] * 2
        assert int(missed[0]["id"]) > int(first[0]["id"])


@pytest.mark.gen_test
async def test_second_get_stream_is_409_and_delete_ends_the_first(url):
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token())
        get_headers = stream_headers(session)
        async with http.stream("GET", url, headers=get_headers) as first:
            assert first.status_code == 200
            second = await http.get(url, headers=get_headers)
            assert second.status_code == 409
            assert (await http.delete(url, headers=headers(session=session))).status_code == 200
            await asyncio.wait_for(first.aread(), 5)  # the stream ends with the session


@pytest.mark.gen_test(timeout=15)
async def test_a_dead_get_client_frees_the_stream(url):
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token())
        get_headers = stream_headers(session)
        async with http.stream("GET", url, headers=get_headers) as stream:
            assert stream.status_code == 200

        async def attached_again() -> bool:
            async with http.stream("GET", url, headers=get_headers) as again:
                return again.status_code == 200

        # The server notices the disconnect and lets a new stream attach.
        await eventually(attached_again, message="the dead client's stream was never freed")


@pytest.mark.gen_test
async def test_batches_only_where_the_revision_allows_them(url):
    batch = [call("echo", {"message": "a"}, 10), call("echo", {"message": "b"}, 11)]
    async with httpx2.AsyncClient() as http:
        old = await open_session(http, url, token(), version="2025-03-26")
        answered = await http.post(url, json=batch, headers=headers(session=old, version="2025-03-26"))
        assert answered.status_code == 200
        assert sorted(r["id"] for r in answered.json()) == [10, 11]
        new = await open_session(http, url, token())
        refused = await http.post(url, json=batch, headers=headers(session=new, version="2025-11-25"))
        assert refused.status_code == 400


@pytest.mark.gen_test(timeout=15)
@pytest.mark.parametrize("settings_overrides", [{"session_idle_timeout": 0.3, "session_cleanup_interval": 0.05}])
async def test_idle_sessions_are_reaped(url, base_url):
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token())

        async def sessions() -> int:
            return (await http.get(f"{base_url}/health")).json()["servers"]["everything"]["sessions"]

        assert await sessions() == 1
        await eventually(lambda: _none(sessions()), interval=0.05, message="the idle session was never reaped")
        response = await http.post(url, json=call("echo", {"message": "x"}), headers=headers(session=session))
        assert response.status_code == 404


@pytest.mark.gen_test(timeout=15)
async def test_a_session_never_outlives_its_token(url):
    short = auth.mint(SECRET, server_name="everything", api_key="plain-key", user_id="ada", ttl=3)
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, short)

        async def refused() -> httpx2.Response | None:
            response = await http.post(url, json=call("echo", {"message": "x"}), headers=headers(session=session))
            return response if response.status_code != 200 else None

        response = await eventually(refused, interval=0.1, message="the session outlived its token")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == -32600


@pytest.mark.gen_test
async def test_a_session_is_valid_only_on_its_route(base_url, url):
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token())
        other = await http.post(
            f"{base_url}/other/mcp", json=call("ping_other", {"message": "x"}), headers=headers(session=session)
        )
        assert other.status_code == 404


@pytest.mark.gen_test
async def test_a_later_token_must_name_the_same_server_and_user(url):
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, url, token(user="ada"))
        same = await http.post(
            url, json=call("echo", {"message": "x"}), headers=headers(token(user="ada"), session=session)
        )
        assert same.status_code == 200
        other_user = await http.post(
            url, json=call("echo", {"message": "x"}), headers=headers(token(user="eve"), session=session)
        )
        assert other_user.status_code == 403
        other_server = await http.post(
            url, json=call("echo", {"message": "x"}), headers=headers(token("other"), session=session)
        )
        assert other_server.status_code == 403
        forged = await http.post(
            url, json=call("echo", {"message": "x"}), headers=headers("not.a.jwt", session=session)
        )
        assert forged.status_code == 401


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"max_sessions_per_server": 2}])
async def test_the_longest_idle_session_is_evicted_at_the_cap(url):
    async with httpx2.AsyncClient() as http:
        first = await open_session(http, url, token())
        second = await open_session(http, url, token())
        await http.post(
            url, json=call("echo", {"message": "x"}), headers=headers(session=first)
        )  # first is fresher now
        await open_session(http, url, token())
        assert (
            await http.post(url, json=call("echo", {"message": "x"}), headers=headers(session=first))
        ).status_code == 200
        assert (
            await http.post(url, json=call("echo", {"message": "x"}), headers=headers(session=second))
        ).status_code == 404


@pytest.mark.gen_test
async def test_a_resume_takes_over_a_half_open_stream(url):
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token())
        get_headers = stream_headers(session)
        async with http.stream("GET", url, headers=get_headers) as old:
            await http.post(url, json=call("announce"), headers=headers(session=session))
            first = await read_events(old, 1)
            # The client believes the old stream is dead and resumes while the server still holds it.
            resumed = stream_headers(session, first[0]["id"])
            async with http.stream("GET", url, headers=resumed) as new:
                assert new.status_code == 200
                await http.post(url, json=call("announce", request_id=9), headers=headers(session=session))
                assert (await read_events(new, 1))[0]["data"]["method"] == "notifications/tools/list_changed"


@pytest.mark.gen_test
async def test_sse_streams_are_primed_for_clients_that_expect_it(url):
    body = call("slow", {"steps": 1})
    body["params"]["_meta"] = {"progressToken": "p"}
    async with httpx2.AsyncClient() as http:
        for version, primed in (("2025-11-25", True), ("2025-06-18", False)):
            session = await open_session(http, url, token(), version=version)
            response = await http.post(url, json=body, headers=headers(session=session, version=version))
            first = sse_events(response.text, priming=True)[0]
            assert (first["data"] is None) is primed, version
            assert first["id"]


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"max_sessions_per_user": 2}])
async def test_one_user_only_evicts_their_own_sessions(url):
    async with httpx2.AsyncClient() as http:
        grace = await open_session(http, url, token(user="grace"))
        ada = [await open_session(http, url, token(user="ada")) for _ in range(3)]  # the third evicts ada's first
        ping = call("echo", {"message": "x"})
        assert (await http.post(url, json=ping, headers=headers(session=grace))).status_code == 200
        assert (await http.post(url, json=ping, headers=headers(session=ada[0]))).status_code == 404
        assert (await http.post(url, json=ping, headers=headers(session=ada[2]))).status_code == 200


@pytest.mark.gen_test
async def test_a_public_server_needs_no_token_and_others_still_do(base_url, servers_dir, gateway, caplog):
    (servers_dir / "open.yaml").write_text(
        "auth: none\ntools:\n  - name: echo\n    handler: everything_tools:echo\n"
        "    inputSchema: {type: object, properties: {message: {type: string}}, required: [message]}\n"
    )
    await gateway.registry.load_file(servers_dir / "open.yaml")
    assert any("PUBLIC (auth: none)" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    async with httpx2.AsyncClient() as http:
        opened = await http.post(f"{base_url}/open/mcp", json=init_body(), headers=headers())
        assert opened.status_code == 200 and opened.headers["Mcp-Session-Id"]
        closed = await http.post(f"{base_url}/everything/mcp", json=init_body(), headers=headers())
        assert closed.status_code == 401
        wrong = await http.post(f"{base_url}/open/mcp", json=init_body(), headers=headers(token("everything")))
        assert wrong.status_code == 403  # a token it carries must still be for this server


async def _none(awaitable) -> bool:
    return not await awaitable
