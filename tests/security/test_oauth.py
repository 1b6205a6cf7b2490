"""Issue [7], clients that speak OAuth: each route's protected-resource metadata (RFC 9728), the
401 challenge that points at it, and the plain answer when no authorization server is set.

Decided (see handlers/oauth.py): the document is 404 for an unknown server, a public one, and
whenever `MCP_AUTHORIZATION_SERVERS` is empty; both the `mcp` SDK's client and `mcp-remote`
treat a 404 there as "not published" and carry on down their discovery lists.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx2
import jwt
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.conftest import SECRET, token
from tests.e2e.wire import headers, init_body

REPO = Path(__file__).parents[2]
AS = "https://auth.example.com"
# mcp-remote from npm, installed on first use into .tools/ (as `make test` installs its npm peers).
MCP_REMOTE_VERSION = "0.15.1"
MCP_REMOTE = REPO / ".tools/mcp-remote/node_modules/mcp-remote/dist/proxy.js"

WITH_AS = pytest.mark.parametrize("settings_overrides", [{"oauth_authorization_servers": (AS,)}])

SCOPED = """\
title: Scoped
scopes: [mcp:use]
tools:
  - name: echo
    handler: everything_tools:echo
    inputSchema: {type: object, properties: {message: {type: string}}, required: [message]}
  - name: whoami
    handler: everything_tools:whoami
    scopes: [admin]
"""


@pytest.fixture
def servers_dir(servers_dir: Path) -> Path:
    (servers_dir / "scoped.yaml").write_text(SCOPED)
    (servers_dir / "open.yaml").write_text("auth: none\ntools:\n  - name: echo\n    handler: everything_tools:echo\n")
    return servers_dir


# -- the discovery document ----------------------------------------------------------------------


@pytest.mark.gen_test
@WITH_AS
@pytest.mark.parametrize("route", ["/scoped/mcp", "/mcp/scoped", "/scoped/sse"])
async def test_each_route_has_its_protected_resource_metadata(base_url, route):
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{base_url}/.well-known/oauth-protected-resource{route}")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "resource": f"{base_url}{route}",
        "authorization_servers": [AS],
        "bearer_methods_supported": ["header"],
        "resource_name": "Scoped",
        "scopes_supported": ["mcp:use", "admin"],  # the server's, then its tools'
    }


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "settings_overrides", [{"oauth_authorization_servers": (AS,), "public_url": "https://mcp.example.com/"}]
)
async def test_the_metadata_names_the_public_url_when_one_is_set(base_url):
    async with httpx2.AsyncClient() as http:
        document = (await http.get(f"{base_url}/.well-known/oauth-protected-resource/everything/mcp")).json()
    assert document["resource"] == "https://mcp.example.com/everything/mcp"
    assert "scopes_supported" not in document  # a server without scopes leaves the AS its defaults


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("settings_overrides", "server", "why"),
    [
        ({"oauth_authorization_servers": (AS,)}, "nowhere", "unknown server"),
        ({"oauth_authorization_servers": (AS,)}, "open", "is public"),
        ({}, "everything", "needs a bearer token from its operator (mcp-tornado token everything)"),
    ],
)
async def test_no_metadata_is_a_404_that_says_why(base_url, server, why):
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{base_url}/.well-known/oauth-protected-resource/{server}/mcp")
    assert response.status_code == 404
    assert why in response.json()["error"]["message"]


# -- the 401 challenge ------------------------------------------------------------------------------


@pytest.mark.gen_test
@WITH_AS
@pytest.mark.parametrize("route", ["/everything/mcp", "/mcp/everything"])
async def test_a_401_points_at_the_routes_metadata_when_an_authorization_server_is_set(base_url, route):
    async with httpx2.AsyncClient() as http:
        response = await http.post(base_url + route, json=init_body(), headers=headers(token(ttl=-60)))
    assert response.status_code == 401
    metadata = f"{base_url}/.well-known/oauth-protected-resource{route}"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge == f'Bearer realm="mcp-tornado", resource_metadata="{metadata}", error="invalid_token"'
    assert response.json()["error"]["message"] == "token expired"


@pytest.mark.gen_test
@pytest.mark.parametrize(("bearer", "reason"), [(None, "a Bearer token is required"), ("expired", "token expired")])
async def test_without_an_authorization_server_a_401_says_the_operator_issues_tokens(base_url, bearer, reason):
    sent = token(ttl=-60) if bearer else None
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/everything/mcp", json=init_body(), headers=headers(sent))
    assert response.status_code == 401
    assert "resource_metadata" not in response.headers["WWW-Authenticate"]
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="mcp-tornado", error=')
    message = response.json()["error"]["message"]
    assert message == f"{reason}: this server needs a bearer token from its operator (mcp-tornado token everything)"


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{}, {"oauth_authorization_servers": (AS,)}])
async def test_dynamic_client_registration_is_refused_with_the_reason(base_url, settings_overrides):
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{base_url}/register", json={"redirect_uris": ["http://localhost/cb"]}, headers=headers(token(ttl=-60))
        )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_client_metadata"
    assert body["error_description"].startswith("the bearer token sent was refused (token expired)")
    assert (AS in body["error_description"]) is bool(settings_overrides)


# -- real OAuth clients ------------------------------------------------------------------------------


class _Storage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class AuthorizationServer:
    """A small OAuth authorization server on a real port: metadata, registration, PKCE code
    exchange; its tokens are signed with the gateway's secret and carry the scopes asked for."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        outer = self

        class Metadata(tornado.web.RequestHandler):
            def get(self) -> None:
                self.write(
                    {
                        "issuer": outer.url,
                        "authorization_endpoint": f"{outer.url}/authorize",
                        "token_endpoint": f"{outer.url}/token",
                        "registration_endpoint": f"{outer.url}/register",
                        "response_types_supported": ["code"],
                        "code_challenge_methods_supported": ["S256"],
                    }
                )

        class Register(tornado.web.RequestHandler):
            def post(self) -> None:
                outer.seen["registration"] = json.loads(self.request.body)
                self.set_status(201)
                self.write(
                    {**outer.seen["registration"], "client_id": "client-1", "token_endpoint_auth_method": "none"}
                )

        class Token(tornado.web.RequestHandler):
            def post(self) -> None:
                form = {k: self.get_body_argument(k) for k in self.request.body_arguments}
                outer.seen["token"] = form
                verifier = hashlib.sha256(form["code_verifier"].encode()).digest()
                challenge = base64.urlsafe_b64encode(verifier).decode().rstrip("=")
                authorized = outer.seen["authorize"]
                if form["code"] != "code-1" or challenge != authorized["code_challenge"][0]:
                    raise tornado.web.HTTPError(400)
                now = int(time.time())
                claims = {"serverName": "scoped", "sub": "oauth-user", "scope": authorized["scope"][0]}
                access = jwt.encode({**claims, "iat": now, "exp": now + 600}, SECRET, algorithm="HS256")
                self.write({"access_token": access, "token_type": "Bearer", "expires_in": 600})

        app = tornado.web.Application(
            [(r"/.well-known/oauth-authorization-server", Metadata), (r"/register", Register), (r"/token", Token)]
        )
        self.server = tornado.httpserver.HTTPServer(app)
        self.server.add_sockets(sockets)

    async def redirect(self, authorization_url: str) -> None:
        """The person at the browser: signs in and consents to what was asked."""
        self.seen["authorize"] = parse_qs(urlparse(authorization_url).query)

    async def callback(self) -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code="code-1", state=self.seen["authorize"]["state"][0])


@pytest.fixture
def authorization_server(io_loop: Any, settings_overrides: dict[str, Any]) -> Any:
    server = AuthorizationServer()
    settings_overrides["oauth_authorization_servers"] = (server.url,)
    yield server
    server.server.stop()


@pytest.mark.gen_test(timeout=30)
async def test_the_sdks_oauth_client_discovers_the_metadata_and_signs_in(authorization_server, base_url):
    """The `mcp` SDK's OAuth client gets a 401, follows its `resource_metadata` to our document,
    asks the authorization server named there for the scopes listed there, for this resource,
    and comes back with a token that opens the server."""
    url = f"{base_url}/scoped/mcp"
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(redirect_uris=["http://localhost:3030/callback"], client_name="test"),
        storage=_Storage(),
        redirect_handler=authorization_server.redirect,
        callback_handler=authorization_server.callback,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=20) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = {tool.name for tool in (await session.list_tools()).tools}
                answer = await session.call_tool("whoami", {})
    asked = authorization_server.seen["authorize"]
    assert asked["resource"] == [url] and asked["scope"] == ["mcp:use admin"]
    assert authorization_server.seen["token"]["resource"] == url
    assert tools == {"echo", "whoami"} and not answer.is_error


@pytest.fixture(scope="session")
def mcp_remote() -> Path:
    """mcp-remote from npm, installed once into .tools/mcp-remote."""
    if not MCP_REMOTE.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is not installed (make test needs node and npm)")
        subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(MCP_REMOTE.parents[3])]
            + [f"mcp-remote@{MCP_REMOTE_VERSION}"],
            check=True,
            timeout=300,
        )
    return MCP_REMOTE


@pytest.mark.gen_test(timeout=30)
async def test_mcp_remote_with_an_expired_token_prints_the_gateways_reason(mcp_remote, base_url, tmp_path):
    """mcp-remote answers every 401 with an OAuth flow; with no authorization server it ends
    at our `/register`, whose refusal (with the reason the token was refused) is what it prints."""
    expired = token(ttl=-60)
    environ = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}  # its ~/.mcp-auth stays in tmp_path
    node = shutil.which("node")
    assert node is not None
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        node,
        str(mcp_remote),
        f"{base_url}/everything/mcp",
        "--header",
        f"Authorization: Bearer {expired}",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environ,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    printed = (stdout + stderr).decode()
    assert process.returncode != 0, printed
    assert time.monotonic() - started < 20
    assert "the bearer token sent was refused (token expired)" in printed, printed
    assert "take a bearer token from their operator (mcp-tornado token SERVER)" in printed, printed
    assert "HTTP 404" not in printed and "sse-only" not in printed, printed  # no detour to another transport
