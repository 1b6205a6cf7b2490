"""`compose:` definitions: the naming rule, collisions refused at load as `file:line: problem`,
and what only shows at runtime (a hidden name, a URI two members list) as the admin sees it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx2
import pytest

from mcp_tornado import auth
from mcp_tornado.definitions import MemberSpec, load_file, parse
from mcp_tornado.errors import DefinitionError
from tests.conftest import SECRET, eventually, mcp_client, token

ADMIN = {"Authorization": f"Bearer {auth.mint(SECRET, admin=True)}"}


def problem(tmp_path: Path, text: str) -> str:
    path = tmp_path / "all.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(DefinitionError) as caught:
        load_file(path)
    return str(caught.value).replace(str(path), "all.yaml")


def test_members_get_their_name_as_prefix_unless_they_say_otherwise():
    spec = parse(
        "compose:\n  - calculator\n  - {server: library, prefix: lib}\n  - {server: notes, prefix: ''}\n",
        source="all.yaml",
        default_name="all",
    )
    assert spec.backend == "compose" and spec.separator == "_"
    assert spec.compose == (
        MemberSpec("calculator", "calculator"),
        MemberSpec("library", "lib"),
        MemberSpec("notes", ""),
    )
    assert parse("compose: [a]\nseparator: '.'\n", source="x", default_name="x").separator == "."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("compose:\n  - a\n  - a\n", "all.yaml:3: compose.1: 'a' is a member already"),
        ("title: t\ncompose:\n  - all\n", "all.yaml:3: compose.0: 'all' is this server itself"),
        (
            "compose:\n  - {server: a, prefix: x}\n  - {server: b, prefix: x_y}\n",
            "all.yaml:3: compose.1: prefix 'x_y' collides with the prefix 'x' of 'a': "
            "names starting 'x_' would be ambiguous",
        ),
        (
            "compose:\n  - calc\n  - {server: b, prefix: calc}\n",
            "all.yaml:3: compose.1: prefix 'calc' collides with the prefix 'calc' of 'calc': "
            "names starting 'calc_' would be ambiguous",
        ),
        (
            "compose:\n  - {server: a, prefix: ''}\n  - {server: b, prefix: ''}\n",
            "all.yaml:3: compose.1: only one member may go without a prefix ('a' does)",
        ),
    ],
)
def test_names_that_could_meet_are_refused_at_load(tmp_path, text, expected):
    assert problem(tmp_path, text) == expected


def test_other_separators_change_what_collides(tmp_path):
    # With "." the prefixes "x" and "x_y" can never meet ("x." vs "x_y.")...
    assert parse(
        "compose: [{server: a, prefix: x}, {server: b, prefix: x_y}]\nseparator: '.'\n", source="s", default_name="s"
    )
    # ...but "x" and "x.y" can.
    text = "separator: '.'\ncompose:\n  - {server: a, prefix: x}\n  - {server: b, prefix: x.y}\n"
    assert problem(tmp_path, text).startswith("all.yaml:4: compose.1: prefix 'x.y' collides")


@pytest.mark.parametrize(
    ("text", "line", "mentions"),
    [
        ("compose: [a]\nurl: http://x/mcp\n", 1, "url"),
        ("compose: [a]\ntools:\n  - {name: t, handler: m:f}\n", 2, "tools"),
        ("separator: _\ntools: []\n", 1, "separator"),
        ("compose: []\n", 1, "compose"),
        ("compose:\n  - {server: a, prefix: 'a b'}\n", 2, "prefix"),
        ("compose:\n  - {name: a}\n", 2, "compose"),
    ],
)
def test_a_compose_definition_is_checked_by_the_schema(tmp_path, text, line, mentions):
    found = problem(tmp_path, text)
    assert found.startswith(f"all.yaml:{line}: ") and mentions in found, found


@pytest.mark.gen_test
async def test_a_known_member_that_cannot_be_composed_is_refused_at_load(gateway, servers_dir):
    # A public composed server would open `everything` (which needs a token) to anyone.
    (servers_dir / "pub.yaml").write_text("auth: none\ntools:\n  - {name: t, handler: everything_tools:echo}\n")
    await gateway.registry.load_file(servers_dir / "pub.yaml")
    path = servers_dir / "open.yaml"
    path.write_text("auth: none\ncompose:\n  - pub\n  - everything\n")
    assert await gateway.registry.load_file(path) is None
    assert gateway.registry.problems[str(path)] == (
        f"{path}:4: compose: 'everything' needs a token, and this composed server is public (auth: none)"
    )
    # A member needing a scope the composed server does not ask of its callers is refused too...
    (servers_dir / "scoped.yaml").write_text(
        "scopes: [secret]\ntools:\n  - {name: t, handler: everything_tools:echo}\n"
    )
    await gateway.registry.load_file(servers_dir / "scoped.yaml")
    path.write_text("compose:\n  - scoped\n")
    assert await gateway.registry.load_file(path) is None
    assert "'scoped' needs scope secret" in gateway.registry.problems[str(path)]
    # ...unless it does.
    path.write_text("scopes: [secret]\ncompose:\n  - scoped\n")
    assert await gateway.registry.load_file(path) is not None
    # Composed servers do not nest.
    path.write_text("auth: none\ncompose:\n  - pub\n")
    assert await gateway.registry.load_file(path) is not None
    (servers_dir / "outer.yaml").write_text("compose:\n  - open\n")
    assert await gateway.registry.load_file(servers_dir / "outer.yaml") is None
    assert "'open' is a composed server itself" in gateway.registry.problems[str(servers_dir / "outer.yaml")]


@pytest.mark.gen_test(timeout=30)
async def test_runtime_collisions_go_to_the_member_listed_first(gateway, base_url, servers_dir):
    # `twin` lists the same resources as `everything`; `other` (unprefixed) has a tool named
    # `ping_other`, which the prefix of the member `ping` takes.
    (servers_dir / "twin.yaml").write_text(
        (servers_dir / "everything.yaml").read_text().replace("name: everything", "name: twin")
    )
    (servers_dir / "ping.yaml").write_text("tools:\n  - {name: other, handler: everything_tools:whoami}\n")
    (servers_dir / "all.yaml").write_text(
        "compose:\n  - everything\n  - twin\n  - {server: other, prefix: ''}\n  - ping\n"
    )
    for name in ("twin", "ping", "all"):
        await gateway.registry.load_file(servers_dir / f"{name}.yaml")
    async with mcp_client(f"{base_url}/all/mcp", token("all")) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        assert tools.count("ping_other") == 1  # ping's tool `other`; other's `ping_other` is hidden
        assert (await client.call_tool("ping_other", {})).structured_content["server"] == "ping"
        resources = [str(r.uri) for r in (await client.list_resources()).resources]
        assert resources.count("memo://readme") == 1
        assert {"everything_echo", "twin_echo"} <= set(tools)

    async def conflicts() -> list[str]:
        async with httpx2.AsyncClient() as http:
            return (await http.get(f"{base_url}/servers/all", headers=ADMIN)).json()["conflicts"]

    found = await eventually(conflicts)
    assert "tool 'ping_other' of 'other' is hidden: the prefix of 'ping' takes it" in found
    assert "resource 'memo://readme' of 'twin' is hidden: 'everything' lists it first" in found
