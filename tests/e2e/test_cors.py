"""CORS: web apps on the allowed origins may call the MCP routes; nothing else is opened."""

from __future__ import annotations

import httpx2
import pytest

from mcp_tornado import auth
from tests.conftest import SECRET, token
from tests.e2e.wire import headers, init_body

INSPECTOR = "http://localhost:6274"  # a loopback origin: allowed by default on a loopback address
EVIL = "http://evil.example"
APP = "https://app.example"


def preflight_headers(origin: str, method: str = "POST", asked: str = "authorization, content-type") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": asked}


def cors_headers(response: httpx2.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.lower().startswith("access-control-")}


def names(header: str) -> set[str]:
    return {name.strip().lower() for name in header.split(",")}


@pytest.mark.gen_test
@pytest.mark.parametrize("route", ["/everything/mcp", "/mcp/everything", "/everything/sse", "/everything/messages"])
async def test_a_preflight_from_an_allowed_origin(base_url, route):
    asked = "authorization, content-type, mcp-protocol-version, mcp-session-id, mcp-param-foo, x-not-ours, mcp-param-"
    async with httpx2.AsyncClient() as http:
        response = await http.options(f"{base_url}{route}", headers=preflight_headers(INSPECTOR, asked=asked))
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == INSPECTOR
    assert response.headers["Vary"] == "Origin"
    assert names(response.headers["Access-Control-Allow-Methods"]) == {"get", "post", "delete", "options"}
    allowed = names(response.headers["Access-Control-Allow-Headers"])
    assert {
        "authorization",
        "content-type",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
        "mcp-method",
        "mcp-name",
        "mcp-param-foo",
    } <= allowed
    assert "x-not-ours" not in allowed and "mcp-param-" not in allowed
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.gen_test
async def test_a_preflight_from_another_origin_is_403_and_opens_nothing(base_url):
    async with httpx2.AsyncClient() as http:
        response = await http.options(f"{base_url}/everything/mcp", headers=preflight_headers(EVIL))
    assert response.status_code == 403
    assert cors_headers(response) == {}


@pytest.mark.gen_test
async def test_answers_to_an_allowed_origin_are_readable_errors_included(base_url):
    async with httpx2.AsyncClient() as http:
        url = f"{base_url}/everything/mcp"
        opened = await http.post(url, json=init_body(), headers=headers(token(), Origin=INSPECTOR))
        assert opened.status_code == 200
        assert opened.headers["Access-Control-Allow-Origin"] == INSPECTOR
        assert {"mcp-session-id", "www-authenticate", "mcp-protocol-version"} <= names(
            opened.headers["Access-Control-Expose-Headers"]
        )
        refused = await http.post(url, json=init_body(), headers=headers(Origin=INSPECTOR))
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert refused.headers["Access-Control-Allow-Origin"] == INSPECTOR
        assert "www-authenticate" in names(refused.headers["Access-Control-Expose-Headers"])
        stream = await http.get(f"{base_url}/everything/sse", headers={"Origin": INSPECTOR})
        assert stream.status_code == 401 and stream.headers["Access-Control-Allow-Origin"] == INSPECTOR


@pytest.mark.gen_test
async def test_without_an_origin_there_are_no_cors_headers(base_url):
    async with httpx2.AsyncClient() as http:
        opened = await http.post(f"{base_url}/everything/mcp", json=init_body(), headers=headers(token()))
        assert opened.status_code == 200 and cors_headers(opened) == {}
        refused = await http.post(f"{base_url}/everything/mcp", json=init_body(), headers=headers())
        assert refused.status_code == 401 and cors_headers(refused) == {}
        options = await http.options(f"{base_url}/everything/mcp")
        assert options.status_code == 204 and cors_headers(options) == {}


@pytest.mark.gen_test
async def test_the_management_api_stays_closed_to_browsers(base_url):
    admin = {"Authorization": f"Bearer {auth.mint(SECRET, admin=True)}", "Origin": INSPECTOR}
    async with httpx2.AsyncClient() as http:
        listed = await http.get(f"{base_url}/servers", headers=admin)
        assert listed.status_code == 200 and cors_headers(listed) == {}
        options = await http.options(f"{base_url}/servers", headers={**admin, **preflight_headers(INSPECTOR)})
        assert options.status_code == 405 and cors_headers(options) == {}


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"allowed_origins": (APP,)}])
async def test_configured_origins_replace_the_loopback_ones(base_url):
    async with httpx2.AsyncClient() as http:
        allowed = await http.options(f"{base_url}/everything/mcp", headers=preflight_headers(APP))
        assert allowed.status_code == 204 and allowed.headers["Access-Control-Allow-Origin"] == APP
        local = await http.options(f"{base_url}/everything/mcp", headers=preflight_headers(INSPECTOR))
        assert local.status_code == 403 and cors_headers(local) == {}


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"host": "0.0.0.0"}])
async def test_with_no_origin_check_configured_no_origin_is_opened(base_url):
    async with httpx2.AsyncClient() as http:
        preflight = await http.options(f"{base_url}/everything/mcp", headers=preflight_headers(APP))
        assert preflight.status_code == 403 and cors_headers(preflight) == {}
        # The request itself is served (nothing checks it), but a browser may not read the answer.
        opened = await http.post(f"{base_url}/everything/mcp", json=init_body(), headers=headers(token(), Origin=APP))
        assert opened.status_code == 200 and cors_headers(opened) == {}
