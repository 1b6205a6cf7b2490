"""The management API is bounded: what an admin token may register, which `${VAR}`s a definition
may read, which file a request acts on, the log of every change, and `POST /tokens`."""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2
import jwt
import pytest

from mcp_tornado import auth
from tests.conftest import SECRET, TEST_ENVIRON, eventually, mcp_client, token

ADMIN = {"Authorization": f"Bearer {auth.mint(SECRET, admin=True)}"}
ALLOW_CODE = pytest.mark.parametrize("settings_overrides", [{"admin_allow_code": True}], ids=["allow-code"])
ECHO = {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "__pycache__")


class Outside:
    """A module outside servers.d/ (but importable: it is on sys.path) that leaves a marker
    file when it is imported, so a test can tell whether the gateway ever imported it."""

    def __init__(self, folder: Path) -> None:
        self.name = f"outside_{uuid.uuid4().hex[:12]}"
        self.marker = folder / f"{self.name}.imported"
        folder.mkdir(exist_ok=True)
        (folder / f"{self.name}.py").write_text(
            "import pathlib\n"
            "from mcp.server.mcpserver import MCPServer\n"
            f"pathlib.Path({str(self.marker)!r}).write_text('imported')\n"
            "mcp = MCPServer('outside')\n"
            "def fn(arguments, context):\n"
            "    return 'ran outside servers.d'\n"
        )

    @property
    def imported(self) -> bool:
        return self.marker.exists() or self.name in sys.modules


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Outside]:
    module = Outside(tmp_path / "elsewhere")
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))
    yield module
    sys.modules.pop(module.name, None)


def code_bodies(outside: Outside, marker: Path) -> dict[str, tuple[dict, str]]:
    """Each kind of body that runs code of the caller's choosing, with the field a refusal names."""
    return {
        "command": (
            {
                # `$$0` is a literal `$0` for sh: the marker path, then the Python that runs the child.
                "command": ["sh", "-c", 'touch "$$0"; exec "$$1" stdio_child.py', str(marker), "${MCP_TEST_PYTHON}"],
            },
            "command",
        ),
        "app": ({"app": f"{outside.name}:mcp"}, "app"),
        "os-getenv": (
            {"resources": [{"uri": "JWT_SECRET", "name": "leak", "handler": "os:getenv"}]},
            "resources.0.handler",
        ),
        "module-outside": (
            {"tools": [{"name": "t", "handler": f"{outside.name}:fn"}]},
            "tools.0.handler",
        ),
        "template-outside": (
            {"resource_templates": [{"uriTemplate": "x://{id}", "name": "x", "handler": f"{outside.name}:fn"}]},
            "resource_templates.0.handler",
        ),
        "prompt-outside": (
            {"prompts": [{"name": "p", "handler": f"{outside.name}:fn"}]},
            "prompts.0.handler",
        ),
    }


KINDS = ["command", "app", "os-getenv", "module-outside", "template-outside", "prompt-outside"]


# -- what REST may register ----------------------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize("kind", KINDS)
async def test_code_is_refused_with_403_and_nothing_is_written_or_imported(
    base_url, servers_dir, outside, tmp_path, kind
):
    marker = tmp_path / "command-ran"
    body, field = code_bodies(outside, marker)[kind]
    before = listing(servers_dir)
    async with httpx2.AsyncClient() as http:
        for method in ("POST", "PUT"):
            response = await http.request(method, f"{base_url}/servers/code", json=body, headers=ADMIN)
            assert response.status_code == 403, response.text
            error = response.json()["error"]
            assert error["field"] == field and "MCP_ADMIN_ALLOW_CODE" in error["message"]
        assert (await http.get(f"{base_url}/servers/code", headers=ADMIN)).status_code == 404
    assert listing(servers_dir) == before
    assert not outside.imported and not marker.exists()


@pytest.mark.gen_test(timeout=30)
@ALLOW_CODE
@pytest.mark.parametrize("kind", KINDS)
async def test_code_is_registered_when_the_operator_allows_it(base_url, servers_dir, outside, tmp_path, kind):
    marker = tmp_path / "command-ran"
    body, _ = code_bodies(outside, marker)[kind]
    async with httpx2.AsyncClient() as http:
        response = await http.put(f"{base_url}/servers/code", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    assert (servers_dir / "code.yaml").is_file()
    if kind == "command":

        async def ran() -> bool:
            return marker.exists()

        await eventually(ran, timeout=10, message="the child never ran")
    elif kind != "os-getenv":
        assert outside.imported


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "reference",
    ["helpers:getenv", "helpers:os.getenv", "everything_tools:time.sleep", "helpers:partial_getenv"],
    ids=["re-exported", "dotted-into-os", "dotted-into-time", "partial"],
)
async def test_a_servers_d_module_cannot_hand_out_code_from_elsewhere(base_url, servers_dir, reference):
    (servers_dir / "helpers.py").write_text(
        "import functools\nimport os\nfrom os import getenv\n"
        "partial_getenv = functools.partial(os.getenv)\n"
        "def mine(uri, context):\n    return 'mine'\n"
    )
    body = {"resources": [{"uri": "JWT_SECRET", "name": "leak", "handler": reference}]}
    async with httpx2.AsyncClient() as http:
        refused = await http.put(f"{base_url}/servers/sly", json=body, headers=ADMIN)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["field"] == "resources.0.handler"
        mine = {"resources": [{"uri": "x://mine", "name": "mine", "handler": "helpers:mine"}]}
        assert (await http.put(f"{base_url}/servers/sly", json=mine, headers=ADMIN)).status_code == 201
    assert "helpers:mine" in (servers_dir / "sly.yaml").read_text()


@pytest.mark.gen_test
async def test_handlers_from_servers_d_and_url_upstreams_are_allowed_by_default(base_url, servers_dir):
    (servers_dir / "pkg").mkdir()
    (servers_dir / "pkg" / "__init__.py").write_text("")
    (servers_dir / "pkg" / "tools.py").write_text("def shout(arguments, context):\n    return 'HEY'\n")
    in_process = {"tools": [{"name": "shout", "handler": "pkg.tools:shout"}]}
    upstream = {"url": "http://127.0.0.1:9/mcp", "start": "lazy", "headers": {"X-User": "${MCP_TEST_USER}"}}
    async with httpx2.AsyncClient() as http:
        assert (await http.put(f"{base_url}/servers/local", json=in_process, headers=ADMIN)).status_code == 201
        assert (await http.put(f"{base_url}/servers/remote", json=upstream, headers=ADMIN)).status_code == 201
    async with mcp_client(f"{base_url}/local/mcp", token("local", api_key=None)) as client:
        assert (await client.call_tool("shout", {})).content[0].text == "HEY"


@pytest.mark.gen_test
@ALLOW_CODE
@pytest.mark.parametrize("cwd", ["/", "..", "../..", "escape"])
async def test_a_cwd_outside_servers_d_is_refused_even_when_code_is_allowed(base_url, servers_dir, tmp_path, cwd):
    (servers_dir / "escape").symlink_to(tmp_path)  # a symlink leading out counts as out
    before = listing(servers_dir)
    body = {"command": ["${MCP_TEST_PYTHON}", "stdio_child.py"], "cwd": cwd, "start": "lazy"}
    async with httpx2.AsyncClient() as http:
        response = await http.put(f"{base_url}/servers/roam", json=body, headers=ADMIN)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["field"] == "cwd"
        inside = {**body, "cwd": "."}
        assert (await http.put(f"{base_url}/servers/roam", json=inside, headers=ADMIN)).status_code == 201
    assert listing(servers_dir) == sorted([*before, "roam.yaml"])


@pytest.mark.gen_test
async def test_a_file_with_a_cwd_outside_servers_d_is_a_definition_problem(gateway, base_url, servers_dir):
    path = servers_dir / "wander.yaml"
    path.write_text('command: ["${MCP_TEST_PYTHON}", stdio_child.py]\nstart: lazy\ncwd: ../\n')

    async def problem() -> str | None:
        return gateway.registry.problems.get(str(path))

    problem_text = await eventually(problem)
    assert problem_text == f"{path}:3: cwd: '../' is outside the definitions folder; a child runs in it or below it"
    assert "wander" not in gateway.registry


# -- ${VAR}: only what the operator lists ---------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "settings_overrides",
    [{}, {"expand_vars": ("MCP_TEST_USER", "JWT_SECRET", "MCP_ADMIN_ALLOW_CODE")}],
    ids=["unlisted", "listed-anyway"],
)
@pytest.mark.parametrize("variable", ["JWT_SECRET", "MCP_ADMIN_ALLOW_CODE"])
async def test_the_gateways_own_settings_are_never_expanded(gateway, base_url, servers_dir, variable):
    before = listing(servers_dir)
    body = {"url": "http://127.0.0.1:9/mcp", "start": "lazy", "headers": {"X-Leak": f"${{{variable}}}"}}
    async with httpx2.AsyncClient() as http:
        response = await http.put(f"{base_url}/servers/leak", json=body, headers=ADMIN)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error == {
        "code": 400,
        "message": f"headers.X-Leak: ${{{variable}}} is one of the gateway's own settings and is never expanded",
        "field": "headers.X-Leak",
    }
    assert SECRET not in response.text
    assert listing(servers_dir) == before


@pytest.fixture
def unlisted_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's environment has MCP_TEST_UNLISTED, which MCP_EXPAND_VARS does not list."""
    monkeypatch.setitem(TEST_ENVIRON, "MCP_TEST_UNLISTED", "set, not listed")


@pytest.mark.gen_test
@pytest.mark.usefixtures("unlisted_variable")  # before the gateway starts
async def test_an_unlisted_variable_is_refused_naming_it(gateway, base_url, servers_dir):
    assert gateway.settings.environ["MCP_TEST_UNLISTED"]
    async with httpx2.AsyncClient() as http:
        unlisted = await http.put(
            f"{base_url}/servers/vars",
            json={"url": "http://127.0.0.1:9/${MCP_TEST_UNLISTED}", "start": "lazy"},
            headers=ADMIN,
        )
    assert unlisted.status_code == 400
    assert unlisted.json()["error"] == {
        "code": 400,
        "message": "url: ${MCP_TEST_UNLISTED} is not listed in MCP_EXPAND_VARS",
        "field": "url",
    }
    # A file: the same rule, reported as file:line.
    path = servers_dir / "vars.yaml"
    path.write_text("url: http://127.0.0.1:9/mcp\nstart: lazy\nheaders:\n  X-Token: 'Bearer ${MCP_TEST_UNLISTED}'\n")

    async def problem() -> str | None:
        return gateway.registry.problems.get(str(path))

    expected = f"{path}:4: headers.X-Token: ${{MCP_TEST_UNLISTED}} is not listed in MCP_EXPAND_VARS"
    assert await eventually(problem) == expected


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"expand_vars": ("MCP_TEST_USER", "MCP_TEST_NOT_SET")}])
async def test_a_listed_variable_that_is_not_set_is_refused_naming_it(base_url):
    body = {"url": "http://127.0.0.1:9/mcp", "start": "lazy", "headers": {"X-Who": "${MCP_TEST_NOT_SET}"}}
    async with httpx2.AsyncClient() as http:
        response = await http.put(f"{base_url}/servers/vars", json=body, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "headers.X-Who: ${MCP_TEST_NOT_SET} is not set in the environment"


@pytest.mark.gen_test(timeout=30)
async def test_a_bare_dollar_stays_literal_and_a_double_dollar_is_one_dollar(base_url, servers_dir):
    (servers_dir / "dollars.yaml").write_text(
        'command: ["${MCP_TEST_PYTHON}", stdio_child.py]\n'
        "env:\n"
        "  BARE: $HOME\n"
        "  ESCAPED: $${MCP_TEST_USER} costs $$5\n"
        "  LISTED: ${MCP_TEST_USER}\n"
    )

    async def environment() -> dict[str, str] | None:
        try:
            async with mcp_client(f"{base_url}/dollars/mcp", token("dollars", api_key=None)) as client:
                return {
                    name: (await client.call_tool("environment", {"name": name})).content[0].text
                    for name in ("BARE", "ESCAPED", "LISTED")
                }
        except Exception:
            return None

    assert await eventually(environment, timeout=15, interval=0.1) == {
        "BARE": "$HOME",
        "ESCAPED": "${MCP_TEST_USER} costs $5",
        "LISTED": "tester",
    }


@pytest.mark.gen_test
async def test_a_dollar_brace_that_is_no_reference_is_refused(base_url):
    body = {"url": "http://127.0.0.1:9/mcp", "start": "lazy", "headers": {"X-Odd": "${not a name}"}}
    async with httpx2.AsyncClient() as http:
        response = await http.put(f"{base_url}/servers/odd", json=body, headers=ADMIN)
    assert response.status_code == 400 and response.json()["error"]["field"] == "headers.X-Odd"


# -- the right file ------------------------------------------------------------------------------


@pytest.fixture
def misnamed(servers_dir: Path) -> Path:
    """servers.d/foo.yaml, which defines the server `bar`."""
    path = servers_dir / "foo.yaml"
    path.write_text("name: bar\ntools:\n  - name: echo\n    handler: everything_tools:echo\n")
    return path


async def live(base_url: str, name: str) -> bool:
    async with httpx2.AsyncClient() as http:
        return (await http.get(f"{base_url}/servers/{name}", headers=ADMIN)).status_code == 200


@pytest.mark.gen_test
@pytest.mark.parametrize("method", ["DELETE", "PUT", "POST"])
async def test_a_name_that_does_not_match_its_file_is_409_naming_both(base_url, servers_dir, misnamed, method):
    await eventually(lambda: live(base_url, "bar"))
    before = misnamed.read_text()
    body = {"tools": [{"name": "shout", "handler": "everything_tools:echo"}]}
    async with httpx2.AsyncClient() as http:
        response = await http.request(
            method, f"{base_url}/servers/foo", json=None if method == "DELETE" else body, headers=ADMIN
        )
    assert response.status_code == 409, response.text
    message = response.json()["error"]["message"]
    assert "'foo'" in message and "'bar'" in message and "foo.yaml" in message
    assert misnamed.read_text() == before and await live(base_url, "bar")
    assert not await live(base_url, "foo")


@pytest.mark.gen_test
async def test_rest_acts_on_the_file_that_defines_the_route_name(base_url, servers_dir, misnamed):
    await eventually(lambda: live(base_url, "bar"))
    replaced = {"tools": [{"name": "shout", "handler": "everything_tools:echo", "inputSchema": ECHO}]}
    async with httpx2.AsyncClient() as http:
        put = await http.put(f"{base_url}/servers/bar", json=replaced, headers=ADMIN)
        assert put.status_code == 200, put.text
        assert put.json()["source"] == str(misnamed) and put.json()["tools"] == ["shout"]
        assert "name: bar" in misnamed.read_text() and not (servers_dir / "bar.yaml").exists()
        assert (await http.post(f"{base_url}/servers/bar", json=replaced, headers=ADMIN)).status_code == 409
        assert (await http.delete(f"{base_url}/servers/bar", headers=ADMIN)).status_code == 204
    assert not misnamed.exists() and not await live(base_url, "bar")


# -- every change is logged ----------------------------------------------------------------------


def changes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mcp_tornado.handlers.admin"]


@pytest.mark.gen_test
async def test_every_change_is_one_info_line_saying_who_what_and_which_file(base_url, servers_dir, caplog):
    caplog.set_level(logging.INFO, logger="mcp_tornado.handlers.admin")
    body = {"tools": [{"name": "shout", "handler": "everything_tools:echo"}]}
    path = servers_dir / "logged.yaml"
    async with httpx2.AsyncClient() as http:
        assert (await http.post(f"{base_url}/servers/logged", json=body, headers=ADMIN)).status_code == 201
        assert (await http.put(f"{base_url}/servers/logged", json=body, headers=ADMIN)).status_code == 200
        assert (await http.delete(f"{base_url}/servers/logged", headers=ADMIN)).status_code == 204
        assert (await http.put(f"{base_url}/servers/other", json={"command": "x"}, headers=ADMIN)).status_code == 403
    assert changes(caplog) == [
        f"management API: admin created server 'logged' (file {path})",
        f"management API: admin replaced server 'logged' (file {path})",
        f"management API: admin deleted server 'logged' (file {path})",
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "mcp_tornado.handlers.admin")


@pytest.mark.gen_test
async def test_the_change_log_names_the_admin_tokens_subject(base_url, servers_dir, caplog):
    now = int(time.time())
    alice = jwt.encode({"admin": True, "sub": "alice", "iat": now, "exp": now + 600}, SECRET, algorithm="HS256")
    caplog.set_level(logging.INFO, logger="mcp_tornado.handlers.admin")
    async with httpx2.AsyncClient() as http:
        response = await http.put(
            f"{base_url}/servers/hers", json={"tools": []}, headers={"Authorization": f"Bearer {alice}"}
        )
    assert response.status_code == 201
    assert changes(caplog) == [f"management API: alice created server 'hers' (file {servers_dir / 'hers.yaml'})"]


# -- POST /tokens --------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_post_tokens_mints_a_token_that_opens_the_server(base_url, caplog):
    caplog.set_level(logging.INFO, logger="mcp_tornado.handlers.admin")
    body = {"server": "everything", "apiKey": "plain-key", "userId": "grace", "ttl": 60}
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/tokens", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    minted = response.json()
    assert abs(minted["expires_at"] - (time.time() + 60)) < 5
    async with mcp_client(f"{base_url}/everything/mcp", minted["token"]) as client:
        assert "grace" in (await client.call_tool("whoami", {})).content[0].text
    assert changes(caplog) == ["management API: admin minted a token for server 'everything' (ttl 60 s)"]
    assert minted["token"] not in caplog.text


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{"token_max_ttl": 120}])
@pytest.mark.parametrize("ttl", [99_999, None], ids=["asked-too-long", "default"])
async def test_post_tokens_caps_the_ttl(base_url, ttl):
    body = {"server": "other"} if ttl is None else {"server": "other", "ttl": ttl}
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/tokens", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["token"], SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 120 and claims["exp"] == response.json()["expires_at"]
    assert claims["serverName"] == "other"


@pytest.mark.gen_test
async def test_post_tokens_for_an_unknown_server_is_404(base_url):
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/tokens", json={"server": "nobody"}, headers=ADMIN)
    assert response.status_code == 404


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": f"Bearer {token()}"}, 403)],
    ids=["no-token", "mcp-token"],
)
async def test_post_tokens_needs_an_admin_token(base_url, headers, status):
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/tokens", json={"server": "everything"}, headers=headers)
    assert response.status_code == status
    assert "token" not in response.json()


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "server"),
        ({"server": "-bad"}, "server"),
        ({"server": "everything", "ttl": "long"}, "ttl"),
        ({"server": "everything", "ttl": 0}, "ttl"),
        ({"server": "everything", "ttl": True}, "ttl"),
        ({"server": "everything", "userId": 7}, "userId"),
        ({"server": "everything", "apiKey": ""}, "apiKey"),
        ({"server": "everything", "admin": True}, "admin"),
        (["everything"], "body"),
    ],
)
async def test_post_tokens_with_a_bad_body_is_400_naming_the_field(base_url, body, field):
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{base_url}/tokens", json=body, headers=ADMIN)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field
