"""The console at `/` over plain HTTP: public and admin views, login with XSRF and cookie flags,
logout, and the SSE feed (`/console/events`): its snapshot, diffs, heartbeats and bounds.
The page in a real browser is tests/browser/test_console.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest

from mcp_tornado import auth
from mcp_tornado.handlers.console_feed import MAX_STREAMS
from tests.conftest import SECRET, eventually, token

ADMIN_TOKEN = auth.mint(SECRET, admin=True, ttl=24 * 3600)  # outlives any suite run
HTTP = httpx2.AsyncClient  # no redirects followed: the tests look at each answer


def cookies_of(response: httpx2.Response) -> dict[str, Any]:
    """Each Set-Cookie of a response, by name: its value and attributes (lower-cased flags)."""
    found = {}
    for header in response.headers.get_list("set-cookie"):
        jar = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            flags = {part.strip().lower() for part in header.split(";")[1:]}
            found[name] = {"value": morsel.value, "header": header, "flags": flags, "max-age": morsel["max-age"]}
    return found


async def xsrf(http: httpx2.AsyncClient, base_url: str) -> tuple[str, str]:
    """The `_xsrf` cookie and the form's field, as a new browser gets them from the login page."""
    async with HTTP() as fresh:  # a client of its own: `http`'s cookie jar would make it an old browser
        page = await fresh.get(f"{base_url}/console/login")
    assert page.status_code == 200
    field = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert field is not None
    return cookies_of(page)["_xsrf"]["value"], field.group(1)


async def log_in(http: httpx2.AsyncClient, base_url: str, admin_token: str = ADMIN_TOKEN) -> httpx2.Response:
    cookie, field = await xsrf(http, base_url)
    return await http.post(
        f"{base_url}/console/login",
        data={"_xsrf": field, "token": admin_token},
        headers={"Cookie": f"_xsrf={cookie}"},
    )


def embedded_state(page: httpx2.Response) -> dict[str, Any]:
    """The state the page was served with (the JSON its script starts from)."""
    match = re.search(r'<script type="application/json" id="initial">(.*?)</script>', page.text, re.S)
    assert match is not None
    return json.loads(match.group(1))


@contextlib.asynccontextmanager
async def feed(base_url: str, cookie: str | None = None) -> AsyncIterator[Any]:
    """`/console/events`, as an async iterator of (event, data) pairs; comments as ("comment", text)."""
    headers = {"Accept": "text/event-stream", **({"Cookie": f"mcp_console={cookie}"} if cookie else {})}
    async with HTTP(timeout=30) as http:
        async with http.stream("GET", f"{base_url}/console/events", headers=headers) as response:
            assert response.status_code == 200, response.status_code
            assert response.headers["content-type"].startswith("text/event-stream")

            async def events() -> AsyncIterator[tuple[str, Any]]:
                event = None
                async for line in response.aiter_lines():
                    if line.startswith(":"):
                        yield "comment", line[1:].strip()
                    elif line.startswith("event: "):
                        event = line[len("event: ") :]
                    elif line.startswith("data: "):
                        yield event or "message", json.loads(line[len("data: ") :])
                        event = None

            yield events()


async def next_event(events: AsyncIterator[tuple[str, Any]], wanted: str, timeout: float = 10) -> Any:
    async def find() -> Any:
        async for event, data in events:
            if event == wanted:
                return data
        raise AssertionError(f"the stream ended before a {wanted!r} event")

    return await asyncio.wait_for(find(), timeout)


# -- the page -------------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_the_public_page_shows_each_server_and_no_detail(base_url):
    async with HTTP() as http:
        page = await http.get(f"{base_url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    # Without JavaScript it is still the table: each server, its route, kind and state.
    for name in ("everything", "other", "sdkapp", "child"):
        assert f'data-server="{name}"' in page.text and f"/{name}/mcp" in page.text
    state = embedded_state(page)
    assert state["admin"] is False and state["gateway"]["status"] == "ok"
    assert state["servers"]["everything"] == {
        "name": "everything",
        "route": "/everything/mcp",
        "kind": "inprocess",
        "state": "running",
        "sessions": 0,
    }
    assert "servers.d" not in page.text and "echo" not in page.text  # no path, no tool: those are the admin's
    assert "Admin login" in page.text and "Log out" not in page.text


@pytest.mark.gen_test
async def test_the_script_and_style_are_served_and_nothing_else_from_the_folder(base_url):
    async with HTTP() as http:
        script = await http.get(f"{base_url}/console/console.js")
        style = await http.get(f"{base_url}/console/console.css")
        template = await http.get(f"{base_url}/console/console.html")
    assert script.status_code == 200 and "EventSource" in script.text
    assert style.status_code == 200 and ".state-crashed" in style.text
    assert template.status_code == 404


# -- login, XSRF, cookies, logout ---------------------------------------------------------------


@pytest.mark.gen_test
async def test_login_keeps_the_token_in_a_strict_httponly_cookie_and_logout_forgets_it(base_url):
    async with HTTP() as http:
        xsrf_cookie, _ = await xsrf(http, base_url)
        ten_minutes = auth.mint(SECRET, admin=True, ttl=600)
        login = await log_in(http, base_url, ten_minutes)
        assert login.status_code == 303 and login.headers["location"] == "/"
        cookie = cookies_of(login)["mcp_console"]
        assert cookie["value"] == ten_minutes
        assert {"httponly", "samesite=strict", "path=/"} <= cookie["flags"]
        assert "secure" not in cookie["flags"]  # plain http (loopback): a Secure cookie would never come back
        assert 590 <= int(cookie["max-age"]) <= 600  # no longer than the token lives

        both = f"mcp_console={ten_minutes}; _xsrf={xsrf_cookie}"
        page = await http.get(f"{base_url}/", headers={"Cookie": both})
        state = embedded_state(page)
        assert state["admin"] is True and "Log out" in page.text
        everything = state["servers"]["everything"]
        assert "echo" in everything["tools"] and everything["restarts"] == 0 and everything["auth"] == "jwt"
        assert everything["api_key"] is True and "plain-key" not in page.text and "2bb80d53" not in page.text

        # Logging out needs the XSRF token too; then the cookie is gone.
        field = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        forged = await http.post(f"{base_url}/console/logout", headers={"Cookie": both})
        assert forged.status_code == 403 and "mcp_console" not in cookies_of(forged)
        logout = await http.post(f"{base_url}/console/logout", data={"_xsrf": field}, headers={"Cookie": both})
        assert logout.status_code == 303 and logout.headers["location"] == "/"
        cleared = cookies_of(logout)["mcp_console"]
        assert cleared["value"] == "" and (cleared["max-age"] == "0" or "expires=" in cleared["header"].lower())


@pytest.mark.gen_test
async def test_the_xsrf_cookie_is_httponly_and_strict(base_url):
    async with HTTP() as http:
        page = await http.get(f"{base_url}/console/login")
    assert {"httponly", "samesite=strict"} <= cookies_of(page)["_xsrf"]["flags"]


@pytest.mark.gen_test
@pytest.mark.parametrize("form", ["no-field", "no-cookie", "mismatch"])
async def test_login_without_a_matching_xsrf_token_is_refused(base_url, form):
    async with HTTP() as http:
        cookie, field = await xsrf(http, base_url)
        other_cookie, other_field = await xsrf(http, base_url)
        data = {"token": ADMIN_TOKEN, **({} if form == "no-field" else {"_xsrf": field})}
        headers = {} if form == "no-cookie" else {"Cookie": f"_xsrf={other_cookie if form == 'mismatch' else cookie}"}
        response = await http.post(f"{base_url}/console/login", data=data, headers=headers)
    assert response.status_code == 403
    assert "mcp_console" not in cookies_of(response)


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("given", "status", "message"),
    [
        (token("everything"), 403, "not an admin token"),
        ("junk", 401, "not valid"),
        (auth.mint(SECRET, admin=True, ttl=-60), 401, "not valid"),
        (auth.mint("another-secret-that-is-long-enough-for-hs256", admin=True), 401, "not valid"),
        ("", 401, "not valid"),
        ("x" * 4000, 400, "too long to keep"),
    ],
    ids=["mcp-token", "junk", "expired", "other-secret", "empty", "huge"],
)
async def test_login_takes_only_a_valid_admin_token(base_url, given, status, message):
    async with HTTP() as http:
        response = await log_in(http, base_url, given)
    assert response.status_code == status and message in response.text
    assert "mcp_console" not in cookies_of(response)


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"public_url": "https://mcp.example.com"}])
async def test_over_https_the_cookies_are_secure(base_url):
    async with HTTP() as http:
        login = await log_in(http, base_url)
    cookies = cookies_of(login)
    assert {"secure", "httponly", "samesite=strict"} <= cookies["mcp_console"]["flags"]


@pytest.mark.gen_test
async def test_a_cookie_that_is_not_an_admin_token_gets_the_public_view_and_is_cleared(base_url):
    async with HTTP() as http:
        page = await http.get(f"{base_url}/", headers={"Cookie": f"mcp_console={token('everything')}"})
    assert embedded_state(page)["admin"] is False
    assert cookies_of(page)["mcp_console"]["value"] == ""


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "settings_overrides",
    [{}, {"allowed_origins": ("http://evil.example",)}],  # an origin allowed on the MCP routes is no console
    ids=["default", "origin-allowed-for-mcp"],
)
async def test_a_form_posted_from_another_origin_is_refused(base_url):
    async with HTTP() as http:
        cookie, field = await xsrf(http, base_url)
        response = await http.post(
            f"{base_url}/console/login",
            data={"_xsrf": field, "token": ADMIN_TOKEN},
            headers={"Cookie": f"_xsrf={cookie}", "Origin": "http://evil.example"},
        )
        own = await http.post(
            f"{base_url}/console/login",
            data={"_xsrf": field, "token": ADMIN_TOKEN},
            headers={"Cookie": f"_xsrf={cookie}", "Origin": base_url},
        )
    assert response.status_code == 403 and "mcp_console" not in cookies_of(response)
    assert own.status_code == 303


# -- the feed -------------------------------------------------------------------------------------

EXTRA = "tools:\n  - name: echo\n    handler: everything_tools:echo\n"


@pytest.mark.gen_test(timeout=30)
async def test_the_feed_sends_a_snapshot_then_only_what_changed(base_url, servers_dir):
    async with feed(base_url) as events:
        first = await next_event(events, "snapshot")
        assert first["admin"] is False and first["base_url"] == base_url
        assert set(first["servers"]) == {"everything", "other", "sdkapp", "child"}
        (servers_dir / "extra.yaml").write_text(EXTRA)
        added = await next_event(events, "diff")
        assert added["servers"] == {
            "extra": {"name": "extra", "route": "/extra/mcp", "kind": "inprocess", "state": "running", "sessions": 0}
        }
        (servers_dir / "extra.yaml").unlink()
        removed = await next_event(events, "diff")
        assert removed["servers"] == {"extra": None}


@pytest.mark.gen_test(timeout=30)
async def test_the_admin_feed_carries_the_details_and_failing_definitions(base_url, servers_dir):
    async with feed(base_url, ADMIN_TOKEN) as events:
        first = await next_event(events, "snapshot")
        assert first["admin"] is True and "echo" in first["servers"]["everything"]["tools"]
        assert first["servers"]["everything"]["source"].endswith("everything.yaml")
        (servers_dir / "bad.yaml").write_text("tools: 3\n")
        changed = await next_event(events, "diff")
        assert changed["gateway"]["problems"] == 1
        assert changed["gateway"]["failing"][0]["source"].endswith("bad.yaml")


@pytest.mark.gen_test(timeout=30)
async def test_the_public_feed_tells_of_problems_without_saying_which(base_url, servers_dir):
    async with feed(base_url) as events:
        await next_event(events, "snapshot")
        (servers_dir / "bad.yaml").write_text("tools: 3\n")
        changed = await next_event(events, "diff")
    assert changed == {"gateway": {**changed["gateway"], "problems": 1}}
    assert "failing" not in changed["gateway"]


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("settings_overrides", [{"sse_keepalive_interval": 0.2}])
async def test_an_idle_feed_sends_heartbeats(base_url):
    async with feed(base_url) as events:
        await next_event(events, "snapshot")
        assert await next_event(events, "comment", timeout=5) == "keepalive"


@pytest.mark.gen_test(timeout=30)
async def test_an_admin_stream_ends_when_its_token_does(base_url):
    short = auth.mint(SECRET, admin=True, ttl=2)
    async with feed(base_url, short) as events:
        assert (await next_event(events, "snapshot"))["admin"] is True

        async def to_the_end() -> bool:
            async for _ in events:
                pass
            return True

        assert await asyncio.wait_for(to_the_end(), 10)


class TestRevocation:
    @pytest.fixture
    def revoked_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "revoked.txt"
        path.write_text("")
        return path

    @pytest.fixture
    def settings_overrides(self, revoked_file: Path) -> dict[str, Any]:
        return {"jwt_revoked_file": revoked_file}

    @pytest.mark.gen_test(timeout=30)
    async def test_an_admin_stream_ends_soon_after_its_token_is_revoked(self, base_url, revoked_file):
        admin = auth.mint(SECRET, admin=True, ttl=600)
        async with feed(base_url, admin) as events:
            assert (await next_event(events, "snapshot"))["admin"] is True
            jti = jwt.decode(admin, options={"verify_signature": False})["jti"]
            revoked_file.with_suffix(".new").write_text(f"{jti}\n")
            revoked_file.with_suffix(".new").replace(revoked_file)

            async def to_the_end() -> bool:
                async for _ in events:
                    pass
                return True

            assert await asyncio.wait_for(to_the_end(), 15)


@pytest.mark.gen_test(timeout=60)
async def test_the_streams_are_capped_per_view(base_url):
    async with contextlib.AsyncExitStack() as stack:
        streams = [await stack.enter_async_context(feed(base_url)) for _ in range(MAX_STREAMS)]
        for events in streams:  # held on to: a stream nobody holds is closed
            await next_event(events, "snapshot")
        async with HTTP() as http:
            refused = await http.get(f"{base_url}/console/events")
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        # Anonymous pages cannot crowd out an admin: that view has its own cap.
        async with feed(base_url, ADMIN_TOKEN) as admin:
            assert (await next_event(admin, "snapshot"))["admin"] is True
    # Once they are gone, there is room again.

    async def room() -> bool:
        async with HTTP() as http:
            async with http.stream("GET", f"{base_url}/console/events") as response:
                return response.status_code == 200

    assert await eventually(room)


# -- a child's stderr, for admins ---------------------------------------------------------------

NOISY = """
import sys
for i in range(200):
    print(f"line {i} " + "x" * 500, file=sys.stderr)
print("é" * 3000, file=sys.stderr)
print("fatal: the last words", file=sys.stderr, flush=True)
sys.exit(3)
"""


@pytest.mark.gen_test(timeout=30)
async def test_a_crashed_childs_last_stderr_lines_are_kept_bounded(base_url, servers_dir):
    (servers_dir / "noisy.py").write_text(NOISY)
    (servers_dir / "noisy.yaml").write_text('command: ["${MCP_TEST_PYTHON}", noisy.py]\n')
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def crashed() -> Any:
        async with HTTP() as http:
            server = (await http.get(f"{base_url}/servers/noisy", headers=headers)).json()
        return server if server.get("restarts") and "the last words" in " ".join(server.get("stderr", [])) else None

    server = await eventually(crashed, timeout=15)
    lines = server["stderr"]
    assert lines[-1] == "fatal: the last words" and server["state"] in ("restarting", "crashed")
    assert len(lines) <= 20 and sum(len(line.encode()) for line in lines) <= 4096
    assert any(line.endswith("[cut]") for line in lines)  # the 6000-byte line, cut
    async with HTTP() as http:
        health = (await http.get(f"{base_url}/health")).text
        public = (await http.get(f"{base_url}/")).text
    assert "the last words" not in health and "the last words" not in public
