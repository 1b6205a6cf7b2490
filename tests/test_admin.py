"""The management API: /servers and /servers/{name}, guarded by an admin JWT."""

from __future__ import annotations

import httpx2
import pytest
import tornado.netutil

from mcp_tornado import auth
from mcp_tornado.server import Gateway
from tests.conftest import SECRET, eventually, mcp_client, token

ADMIN = {"Authorization": f"Bearer {auth.mint(SECRET, admin=True)}"}
CALC = {
    "title": "Registered",
    "tools": [
        {
            "name": "shout",
            "handler": "everything_tools:echo",
            "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
        }
    ],
}


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": f"Bearer {token()}"}, 403), ({"Authorization": "Bearer junk"}, 401), (ADMIN, 200)],
    ids=["no-token", "mcp-token", "bad-token", "admin"],
)
async def test_the_api_needs_an_admin_token(base_url, headers, status):
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{base_url}/servers", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["error"]["code"] == 401


@pytest.mark.gen_test
async def test_list_and_show_reveal_no_keys(base_url):
    async with httpx2.AsyncClient() as http:
        listed = await http.get(f"{base_url}/servers", headers=ADMIN)
        shown = await http.get(f"{base_url}/servers/everything", headers=ADMIN)
        missing = await http.get(f"{base_url}/servers/nobody", headers=ADMIN)
        bad_name = await http.get(f"{base_url}/servers/-dash", headers=ADMIN)
    assert {"everything", "other", "sdkapp", "child"} == {s["name"] for s in listed.json()["servers"]}
    server = shown.json()
    assert server["state"] == "running" and server["kind"] == "inprocess"
    assert "echo" in server["tools"] and server["sessions"] == 0 and server["last_error"] is None
    for body in (listed.text, shown.text):
        assert "plain-key" not in body and "sha256" not in body and "2bb80d53" not in body
    assert missing.status_code == 404
    assert bad_name.status_code == 400 and bad_name.json()["error"]["field"] == "name"


@pytest.mark.gen_test
async def test_register_is_live_before_the_response_and_written_to_the_folder(base_url, servers_dir):
    async with httpx2.AsyncClient() as http:
        created = await http.post(f"{base_url}/servers/registered", json=CALC, headers=ADMIN)
        assert created.status_code == 201, created.text
        assert created.json()["tools"] == ["shout"]
        # No waiting: the server answers at once.
        async with mcp_client(f"{base_url}/registered/mcp", token("registered", api_key=None)) as client:
            assert (await client.call_tool("shout", {"message": "hey"})).content[0].text == "hey"
        assert (servers_dir / "registered.yaml").is_file()
        again = await http.post(f"{base_url}/servers/registered", json=CALC, headers=ADMIN)
        assert again.status_code == 409


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tools": [{"name": "t"}]}, "tools.0"),
        # (a module outside servers.d/ is refused before any import: tests/security/test_management.py)
        ({"tools": [{"name": "t", "handler": "everything_tools:no_such_function"}]}, "tools.0.handler"),
        ({"tools": [{"name": "t", "handler": "everything_tools:echo", "colour": "blue"}]}, "tools.0.colour"),
        ({"tools": [], "url": "http://x", "command": "y"}, None),
        ([1, 2], "body"),
    ],
    ids=["missing-handler", "unimportable", "unknown-key", "two-backends", "not-an-object"],
)
async def test_a_bad_body_is_400_naming_the_field_and_writes_nothing(base_url, servers_dir, body, field):
    before = sorted(p.name for p in servers_dir.iterdir())
    async with httpx2.AsyncClient() as http:
        response = await http.put(f"{base_url}/servers/refused", json=body, headers=ADMIN)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["message"]
        if field is not None:
            assert error["field"] == field
        assert (await http.get(f"{base_url}/servers/refused", headers=ADMIN)).status_code == 404
    assert sorted(p.name for p in servers_dir.iterdir()) == before


@pytest.mark.gen_test
async def test_a_body_naming_another_server_is_409_and_writes_nothing(base_url, servers_dir):
    before = sorted(p.name for p in servers_dir.iterdir())
    async with httpx2.AsyncClient() as http:
        response = await http.put(f"{base_url}/servers/refused", json={"name": "someone-else"}, headers=ADMIN)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["field"] == "name" and "'someone-else'" in error["message"] and "'refused'" in error["message"]
    assert sorted(p.name for p in servers_dir.iterdir()) == before


@pytest.mark.gen_test
async def test_malformed_json_body_is_400(base_url):
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/servers/x", content=b"{not json", headers=ADMIN)
    assert response.status_code == 400 and response.json()["error"]["field"] == "body"


@pytest.mark.gen_test
async def test_put_creates_then_replaces_and_delete_removes(base_url, servers_dir):
    replaced = {**CALC, "tools": [{**CALC["tools"][0], "name": "whisper"}]}
    async with httpx2.AsyncClient() as http:
        assert (await http.put(f"{base_url}/servers/swap", json=CALC, headers=ADMIN)).status_code == 201
        response = await http.put(f"{base_url}/servers/swap", json=replaced, headers=ADMIN)
        assert response.status_code == 200 and response.json()["tools"] == ["whisper"]
        assert "whisper" in (servers_dir / "swap.yaml").read_text()
        assert (await http.delete(f"{base_url}/servers/swap", headers=ADMIN)).status_code == 204
        assert not (servers_dir / "swap.yaml").exists()
        assert (await http.get(f"{base_url}/servers/swap", headers=ADMIN)).status_code == 404
        assert (await http.delete(f"{base_url}/servers/swap", headers=ADMIN)).status_code == 404
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        gone = await http.post(
            f"{base_url}/swap/mcp", json=init, headers={"Accept": "application/json, text/event-stream"}
        )
        assert gone.status_code == 404


@pytest.mark.gen_test
async def test_replacing_an_existing_file_server_keeps_its_file(base_url, servers_dir):
    async with httpx2.AsyncClient() as http:
        response = await http.put(f"{base_url}/servers/other", json=CALC, headers=ADMIN)
    assert response.status_code == 200
    assert "shout" in (servers_dir / "other.yaml").read_text()
    assert not (servers_dir / "other.yaml.yaml").exists() and len(list(servers_dir.glob("other*"))) == 1


@pytest.mark.gen_test
async def test_a_broken_file_shows_its_problem(base_url, servers_dir):
    (servers_dir / "other.yaml").write_text("tools:\n  - name: [unclosed\n")

    async def last_error() -> str | None:
        async with httpx2.AsyncClient() as http:
            return (await http.get(f"{base_url}/servers/other", headers=ADMIN)).json()["last_error"]

    problem = await eventually(last_error)
    assert problem.startswith(f"{servers_dir / 'other.yaml'}:2: invalid YAML")


@pytest.mark.gen_test(timeout=20)
async def test_registrations_survive_a_restart(gateway, base_url, servers_dir, io_loop):
    async with httpx2.AsyncClient() as http:
        assert (await http.post(f"{base_url}/servers/durable", json=CALC, headers=ADMIN)).status_code == 201
    await gateway.stop()
    again = Gateway(gateway.settings)
    port = await again.start(tornado.netutil.bind_sockets(0, "127.0.0.1"))
    try:
        async with mcp_client(f"http://127.0.0.1:{port}/durable/mcp", token("durable", api_key=None)) as client:
            assert (await client.call_tool("shout", {"message": "still here"})).content[0].text == "still here"
    finally:
        await again.stop()
