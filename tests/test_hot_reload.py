"""servers.d follows the files: a real watchdog observer on a temporary folder."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx2
import mcp_types as types
import pytest

from tests.conftest import eventually, mcp_client, token
from tests.e2e.wire import headers, open_session

SIMPLE = """\
title: {title}
tools:
  - name: {tool}
    handler: everything_tools:echo
    inputSchema: {{type: object, properties: {{message: {{type: string}}}}, required: [message]}}
"""


async def health(base_url: str) -> dict:
    async with httpx2.AsyncClient() as http:
        return (await http.get(f"{base_url}/health")).json()


async def served(base_url: str, name: str) -> bool:
    return name in (await health(base_url))["servers"]


async def tool_names(base_url: str, name: str) -> set[str]:
    async with mcp_client(f"{base_url}/{name}/mcp", token(name, api_key=None)) as client:
        return {t.name for t in (await client.list_tools()).tools}


@pytest.mark.gen_test(timeout=20)
async def test_a_new_file_goes_live(base_url, servers_dir):
    started = time.monotonic()
    (servers_dir / "fresh.yaml").write_text(SIMPLE.format(title="Fresh", tool="hello"))
    await eventually(lambda: served(base_url, "fresh"), message="fresh.yaml never went live")
    logging.getLogger(__name__).info("went live in %.0f ms", (time.monotonic() - started) * 1000)
    assert await tool_names(base_url, "fresh") == {"hello"}


@pytest.mark.gen_test(timeout=20)
async def test_a_change_reaches_live_sessions_with_list_changed(base_url, servers_dir, gateway):
    (servers_dir / "fresh.yaml").write_text(SIMPLE.format(title="Fresh", tool="hello"))
    await eventually(lambda: served(base_url, "fresh"))
    changed = asyncio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with mcp_client(f"{base_url}/fresh/mcp", token("fresh", api_key=None), message_handler=on_message) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"hello"}
        # The client opens its GET stream on its own, after initialize; wait until it is attached.
        await eventually(
            lambda: _async(any(s.standalone.attached for s in gateway.registry.get("fresh").sessions)),
            message="the client never opened its GET stream",
        )
        (servers_dir / "fresh.yaml").write_text(SIMPLE.format(title="Fresh", tool="goodbye"))
        await asyncio.wait_for(changed.wait(), 5)
        assert {t.name for t in (await client.list_tools()).tools} == {"goodbye"}
        assert (await client.call_tool("goodbye", {"message": "same session"})).content[0].text == "same session"


@pytest.mark.gen_test(timeout=20)
async def test_deleting_the_file_removes_the_server_and_ends_its_sessions(base_url, servers_dir):
    async with httpx2.AsyncClient() as http:
        session = await open_session(http, f"{base_url}/other/mcp", token("other", api_key=None))
        (servers_dir / "other.yaml").unlink()
        await eventually(lambda: _not(served(base_url, "other")))
        body = {"jsonrpc": "2.0", "id": 5, "method": "tools/list"}
        assert (
            await http.post(f"{base_url}/other/mcp", json=body, headers=headers(session=session))
        ).status_code == 404


@pytest.mark.gen_test(timeout=20)
async def test_a_rename_is_a_delete_and_a_create(base_url, servers_dir):
    (servers_dir / "other.yaml").rename(servers_dir / "renamed.yaml")
    await eventually(lambda: served(base_url, "renamed"))
    await eventually(lambda: _not(served(base_url, "other")))
    assert await tool_names(base_url, "renamed") == {"ping_other"}


@pytest.mark.gen_test(timeout=20)
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("title: Other\ntools:\n  - name: [unclosed\n", "invalid YAML"),
        ("title: Other\ntools:\n  - name: t\n    handler: everything_tools:echo\n    colour: blue\n", "colour"),
        ("title: Other\ntools:\n  - name: t\n    handler: no_such_module:fn\n", "no_such_module"),
    ],
    ids=["broken-yaml", "schema-error", "unimportable-handler"],
)
async def test_a_bad_file_keeps_the_last_good_version(base_url, servers_dir, gateway, content, problem, caplog):
    path = servers_dir / "other.yaml"
    with caplog.at_level(logging.ERROR):
        path.write_text(content)
        await eventually(lambda: _async(str(path) in gateway.registry.problems))
    assert problem in gateway.registry.problems[str(path)]
    assert any(f"{path}:" in r.getMessage() and problem in r.getMessage() for r in caplog.records)
    assert await tool_names(base_url, "other") == {"ping_other"}  # still the last good version
    path.write_text(SIMPLE.format(title="Fixed", tool="fixed"))
    await eventually(lambda: _async(str(path) not in gateway.registry.problems))
    assert await tool_names(base_url, "other") == {"fixed"}


@pytest.mark.gen_test(timeout=20)
async def test_editing_a_handler_module_reloads_its_servers(base_url, servers_dir):
    async with mcp_client(f"{base_url}/other/mcp", token("other", api_key=None)) as client:
        assert (await client.call_tool("ping_other", {"message": "hi"})).content[0].text == "hi"
    module = servers_dir / "everything_tools.py"
    module.write_text(
        module.read_text().replace('return arguments["message"]', 'return arguments["message"].upper() + "!"')
    )

    async def shouts() -> bool:
        async with mcp_client(f"{base_url}/other/mcp", token("other", api_key=None)) as client:
            return (await client.call_tool("ping_other", {"message": "hi"})).content[0].text == "HI!"

    await eventually(shouts, timeout=10)


@pytest.mark.gen_test(timeout=30)
async def test_a_burst_of_fifty_files(base_url, servers_dir):
    for i in range(50):
        (servers_dir / f"burst{i:02}.yaml").write_text(SIMPLE.format(title=f"Burst {i}", tool=f"t{i}"))

    async def all_live() -> bool:
        servers = (await health(base_url))["servers"]
        return all(f"burst{i:02}" in servers for i in range(50))

    await eventually(all_live, timeout=15)
    assert await tool_names(base_url, "burst49") == {"t49"}


@pytest.mark.gen_test(timeout=20)
async def test_a_file_written_in_two_halves_is_loaded_whole(base_url, servers_dir, gateway, caplog):
    text = SIMPLE.format(title="Halves", tool="first") + (
        "  - name: second\n    handler: everything_tools:echo\n"
        "    inputSchema: {type: object, properties: {message: {type: string}}, required: [message]}\n"
    )
    path = servers_dir / "halves.yaml"
    with caplog.at_level(logging.ERROR), path.open("w") as handle:
        handle.write(text[: len(text) // 2])
        handle.flush()
        await asyncio.sleep(0.1)  # a slow writer, still holding the file open
        assert not await served(base_url, "halves")
        handle.write(text[len(text) // 2 :])
    await eventually(lambda: served(base_url, "halves"))
    assert await tool_names(base_url, "halves") == {"first", "second"}
    assert str(path) not in gateway.registry.problems
    assert not [r for r in caplog.records if "halves.yaml" in r.getMessage()]


async def _async(value: object) -> object:
    return value


async def _not(awaitable) -> bool:
    return not await awaitable


@pytest.mark.gen_test(timeout=20)
async def test_a_bad_file_at_start_up_does_not_stop_the_others(servers_dir, gateway):
    import tornado.netutil

    from mcp_tornado.server import Gateway

    (servers_dir / "broken.yaml").write_text("tools:\n  - name: [unclosed\n")
    (servers_dir / "wrong.yaml").write_text("tools:\n  - name: t\n    handler: nowhere:fn\n")
    again = Gateway(gateway.settings)
    port = await again.start(tornado.netutil.bind_sockets(0, "127.0.0.1"))
    try:
        served_now = (await health(f"http://127.0.0.1:{port}"))["servers"]
        assert {"everything", "other"} <= set(served_now)
        assert "broken" not in served_now and "wrong" not in served_now
        problems = again.registry.problems
        assert problems[str(servers_dir / "broken.yaml")].startswith(f"{servers_dir / 'broken.yaml'}:2: invalid YAML")
        assert problems[str(servers_dir / "wrong.yaml")].startswith(f"{servers_dir / 'wrong.yaml'}:3: tools.0.handler")
    finally:
        await again.stop()
