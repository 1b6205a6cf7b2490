"""No detail leaks: public pages and MCP-route errors are generic; file paths, exception text and
offending values are only in the log and in the admin view (`GET /servers`, `/servers/{name}`)."""

from __future__ import annotations

import logging

import httpx2
import pytest

from mcp_tornado import auth
from tests.conftest import SECRET, eventually, token

ADMIN = {"Authorization": f"Bearer {auth.mint(SECRET, admin=True)}"}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MISSING_PROGRAM = "/no/such/dir/secret-binary-name"


@pytest.mark.gen_test
async def test_public_pages_name_no_failing_file_and_no_problem(base_url, servers_dir):
    broken = servers_dir / "broken-secretly.yaml"
    broken.write_text("tools:\n  - name: [unclosed\n")
    async with httpx2.AsyncClient() as http:

        async def failing() -> dict | None:
            listed = (await http.get(f"{base_url}/servers", headers=ADMIN)).json()
            return next((f for f in listed["failing"] if f["source"] == str(broken)), None)

        # The admin view has every detail...
        detail = await eventually(failing)
        assert detail["last_error"].startswith(f"{broken}:2: invalid YAML")
        # ...the public pages have a count.
        page = await http.get(f"{base_url}/")
        health = await http.get(f"{base_url}/health")
    assert page.status_code == 200 and health.status_code == 200
    assert "Definitions with problems: 1" in page.text and health.json()["problems"] == 1
    for public in (page.text, health.text):
        assert str(servers_dir) not in public and "broken-secretly" not in public and "invalid YAML" not in public


@pytest.mark.gen_test(timeout=30)
async def test_a_crashed_child_is_a_generic_503(base_url, servers_dir):
    (servers_dir / "gone.yaml").write_text(f"command: [{MISSING_PROGRAM}]\n")
    mcp_token = token("gone", api_key=None)
    async with httpx2.AsyncClient() as http:

        async def unavailable() -> httpx2.Response | None:
            response = await http.post(
                f"{base_url}/gone/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {mcp_token}"}
            )
            return response if response.status_code == 503 else None

        response = await eventually(unavailable, timeout=15, interval=0.1)
        shown = (await http.get(f"{base_url}/servers/gone", headers=ADMIN)).json()
        health = await http.get(f"{base_url}/health")
        page = await http.get(f"{base_url}/")
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["message"] in ("gone is restarting", "gone is crashed")
    for public in (response.text, health.text, page.text):
        assert "secret-binary-name" not in public and "FileNotFoundError" not in public and "/no/such" not in public
    # The admin sees the cause.
    assert "FileNotFoundError" in shown["last_error"] and MISSING_PROGRAM in shown["last_error"]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("bearer", "status"),
    [
        ("not-a-jwt", 401),
        (auth.mint("another-secret-that-is-long-enough-for-hs256", server_name="everything"), 401),
        (auth.mint(SECRET, server_name="everything", ttl=-60), 401),
        (token("other"), 403),
        (token("everything", api_key="wrong-key-value"), 403),
        (auth.mint(SECRET, admin=True), 403),
    ],
    ids=["malformed", "badly-signed", "expired", "other-server", "wrong-api-key", "admin-token"],
)
async def test_mcp_route_401_and_403_say_nothing_about_keys_tokens_or_files(base_url, servers_dir, bearer, status):
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{base_url}/everything/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {bearer}"}
        )
    assert response.status_code == status
    message = response.json()["error"]["message"]
    for detail in (bearer, SECRET, "wrong-key-value", "plain-key", "sha256", str(servers_dir), "Traceback"):
        assert detail not in message, message


SECRET_KEY = "my-real-api-key-4711"


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"api_keys": SECRET_KEY, "tools": []}, "api_keys"),
        ({"api_keys": ["fine-key", {"key": SECRET_KEY}], "tools": []}, "api_keys.1"),
        ({"api_keys": [SECRET_KEY], "auth": "none", "tools": []}, None),
        ({"api_keys": [SECRET_KEY], "url": "http://x", "command": "y"}, None),
    ],
    ids=["not-a-list", "bad-entry", "public-with-keys", "two-backends"],
)
async def test_a_schema_error_about_api_keys_never_echoes_the_key(base_url, caplog, body, field):
    caplog.set_level(logging.DEBUG)
    async with httpx2.AsyncClient() as http:
        response = await http.put(f"{base_url}/servers/keyed", json=body, headers=ADMIN)
    assert response.status_code == 400, response.text
    if field is not None:
        assert response.json()["error"]["field"] == field
    assert SECRET_KEY not in response.text
    assert SECRET_KEY not in caplog.text


@pytest.mark.gen_test
async def test_a_file_whose_api_keys_are_wrong_is_logged_and_shown_without_the_key(base_url, servers_dir, caplog):
    caplog.set_level(logging.DEBUG)
    path = servers_dir / "keyed.yaml"
    path.write_text(f"auth: none\napi_keys: [{SECRET_KEY}]\ntools: []\n")
    async with httpx2.AsyncClient() as http:

        async def failing() -> dict | None:
            listed = (await http.get(f"{base_url}/servers", headers=ADMIN)).json()
            return next((f for f in listed["failing"] if f["source"] == str(path)), None)

        detail = await eventually(failing)
        listed = await http.get(f"{base_url}/servers", headers=ADMIN)
    assert detail["last_error"].startswith(f"{path}:1: ")
    assert SECRET_KEY not in listed.text and SECRET_KEY not in caplog.text
    assert any(str(path) in record.getMessage() for record in caplog.records)
