"""`compose:` one route over in-process, stdio and remote members, with the official client."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import warnings
from pathlib import Path

import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from tests.conftest import eventually, mcp_client, token, wait_until
from tests.e2e.test_remote import Upstream
from tests.e2e.wire import headers, init_body

# `child` runs the test tree's stdio server unless a file named `down` is in servers.d/: then
# every start fails at once, so a killed child stays down until the test lets it come back.
FLAKY_CHILD = """\
command: ["${MCP_TEST_PYTHON}", "-c", "import os, runpy, sys; sys.exit(3) if os.path.exists('down') \
else runpy.run_path('stdio_child.py', run_name='__main__')"]
timeout: 5
"""

COMPOSED = """\
title: All of them
compose:
  - everything                      # in-process, with api_keys
  - {server: other, prefix: o}      # in-process, its own prefix
  - child                           # a stdio child
  - remote                          # a remote url
  - later                           # not defined (yet): left out until it is
"""


@pytest.fixture
def upstream(servers_dir: Path):
    up = Upstream()
    up.start()
    wait_until(lambda: _listening(up.port), timeout=20, message="the upstream never listened")
    (servers_dir / "remote.yaml").write_text(f"url: {up.url}\nstart: lazy\ntimeout: 5\n")
    (servers_dir / "child.yaml").write_text(FLAKY_CHILD)
    (servers_dir / "all.yaml").write_text(COMPOSED)
    yield up
    up.stop()


def all_url(base_url: str) -> str:
    return f"{base_url}/all/mcp"


def all_token(api_key: str | None = "plain-key") -> str:
    return token("all", api_key=api_key)


async def tool_names(client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


def text_of(result) -> str:
    return result.content[0].text


@pytest.mark.gen_test(timeout=60)
async def test_every_member_is_served_under_its_prefix(upstream, base_url):
    await upstream.wait_listening()
    async with mcp_client(all_url(base_url), all_token()) as client:
        names = await tool_names(client)
        assert {"everything_echo", "o_ping_other", "child_add", "remote_shout"} <= names
        assert not {"echo", "ping_other", "add", "shout"} & names  # every name is namespaced
        assert text_of(await client.call_tool("everything_echo", {"message": "hi"})) == "hi"
        assert text_of(await client.call_tool("o_ping_other", {"message": "there"})) == "there"
        assert text_of(await client.call_tool("child_add", {"a": 1, "b": 2})) == "3.0"
        assert text_of(await client.call_tool("remote_shout", {"text": "loud"})) == "LOUD"
        # The member's handler sees the composed caller; it runs as the member.
        who = (await client.call_tool("everything_whoami", {})).structured_content
        assert who["server"] == "everything" and who["api_key"] == "plain-key" and who["user_id"] == "ada"
        # Resources and templates keep their URIs; prompts are namespaced like tools.
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"memo://readme", "memo://clock"} <= uris
        assert (await client.read_resource("memo://readme")).contents[0].text == "# Hello from a resource"
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert "memo://notes/{id}" in templates
        assert "7" in (await client.read_resource("memo://notes/7")).contents[0].text
        assert "everything_greet" in {p.name for p in (await client.list_prompts()).prompts}
        prompt = await client.get_prompt("everything_greet", {"who": "Ada", "mood": "calm"})
        assert prompt.messages[0].content.text == "Say hello to Ada in a calm way."
        ref = types.PromptReference(type="ref/prompt", name="everything_greet")
        assert (await client.complete(ref, {"name": "who", "value": "A"})).completion.values == ["Ada", "Alan"]
        with pytest.raises(MCPError, match="Unknown tool: nobody_echo"):
            await client.call_tool("nobody_echo", {"message": "x"})


@pytest.mark.gen_test(timeout=60)
async def test_progress_logs_and_client_requests_reach_the_composed_session(upstream, base_url):
    logs: list[object] = []
    progress: list[float] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params.data)

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def elicit(context, params):
        if "name" in params.message:
            return types.ElicitResult(action="accept", content={"name": "Ada"})
        return types.ElicitResult(action="accept", content={"colour": "green"})

    async def sample(context, params):
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="old pond"), model="test-model"
        )

    async with mcp_client(
        all_url(base_url), all_token(), logging_callback=on_log, elicitation_callback=elicit, sampling_callback=sample
    ) as c:
        # An in-process member...
        done = await c.call_tool("everything_slow", {"steps": 2}, progress_callback=on_progress)
        assert text_of(done) == "done 2 steps" and progress == [1, 2]
        assert logs == ["did step 1", "did step 2"]
        assert text_of(await c.call_tool("everything_ask_name", {})) == "Hello, Ada!"
        assert text_of(await c.call_tool("everything_haiku", {})) == "model said: old pond"
        # ...and a stdio child, through its upstream link.
        progress.clear()
        logs.clear()
        counted = await c.call_tool("child_count", {"steps": 2}, progress_callback=on_progress)
        assert text_of(counted) == "counted 2" and progress == [1, 2]
        assert logs == ["step 1", "step 2"]
        assert text_of(await c.call_tool("child_ask", {})) == "you said green"


@pytest.mark.gen_test(timeout=60)
async def test_a_member_with_api_keys_is_seen_only_with_a_key_it_accepts(upstream, base_url):
    async with mcp_client(all_url(base_url), all_token(api_key=None)) as client:
        names = await tool_names(client)
        assert "o_ping_other" in names and not any(name.startswith("everything_") for name in names)
        with pytest.raises(MCPError, match="Unknown tool: everything_echo"):  # as if it were not there
            await client.call_tool("everything_echo", {"message": "x"})
    async with mcp_client(all_url(base_url), all_token(api_key="wrong")) as client:
        assert not any(name.startswith("everything_") for name in await tool_names(client))


@pytest.mark.gen_test(timeout=30)
async def test_jwt_rules_apply_to_the_composed_route(upstream, base_url):
    async with httpx2.AsyncClient() as http:
        for bearer, status in ((token("everything"), 403), ("not-a-token", 401)):
            answer = await http.post(all_url(base_url), json=init_body(), headers=headers(bearer))
            assert answer.status_code == status, answer.text


@pytest.mark.gen_test(timeout=90)
async def test_a_member_that_crashes_vanishes_and_comes_back(upstream, base_url, gateway, servers_dir):
    changed = asyncio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with mcp_client(all_url(base_url), all_token(), message_handler=on_message) as client:
        assert "child_pid" in await tool_names(client)
        pid = int(text_of(await client.call_tool("child_pid", {})))
        sessions = gateway.registry.get("all").sessions
        await eventually(lambda: _true(any(s.standalone.attached for s in sessions)), message="no GET stream")
        (servers_dir / "down").write_text("")
        os.kill(pid, signal.SIGKILL)

        async def gone() -> bool:
            return not any(name.startswith("child_") for name in await tool_names(client))

        await eventually(gone, timeout=10, message="the crashed member's tools are still listed")
        await asyncio.wait_for(changed.wait(), 5)
        # Its calls answer an error naming it; the other members work on.
        failed = await client.call_tool("child_add", {"a": 1, "b": 1})
        assert failed.is_error and "'child'" in text_of(failed), text_of(failed)
        assert text_of(await client.call_tool("everything_echo", {"message": "still"})) == "still"
        assert text_of(await client.call_tool("remote_shout", {"text": "up"})) == "UP"
        changed.clear()
        (servers_dir / "down").unlink()

        async def back() -> bool:
            return "child_add" in await tool_names(client)

        await eventually(back, timeout=40, interval=0.2, message="the member never came back")
        await asyncio.wait_for(changed.wait(), 5)
        assert text_of(await client.call_tool("child_add", {"a": 2, "b": 2})) == "4.0"
        assert int(text_of(await client.call_tool("child_pid", {}))) != pid


@pytest.mark.gen_test(timeout=60)
async def test_a_remote_member_that_goes_away_is_left_out(upstream, base_url):
    await upstream.wait_listening()
    async with mcp_client(all_url(base_url), all_token()) as client:
        assert "remote_shout" in await tool_names(client)
        upstream.stop()

        async def gone() -> bool:
            with_errors = await tool_names(client)
            return "remote_shout" not in with_errors and "everything_echo" in with_errors

        await eventually(gone, timeout=20, interval=0.2, message="the remote member's tools are still listed")
        failed = await client.call_tool("remote_shout", {"text": "x"})
        assert failed.is_error and "'remote'" in text_of(failed), text_of(failed)


@pytest.mark.gen_test(timeout=60)
async def test_a_member_defined_later_is_picked_up_and_a_removed_one_dropped(upstream, base_url, servers_dir):
    changed = asyncio.Event()

    async def on_message(message) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with mcp_client(all_url(base_url), all_token(), message_handler=on_message) as client:

        async def has(name: str, present: bool = True):
            async def check() -> bool:
                return (name in await tool_names(client)) is present

            return check

        assert "later_ping_other" not in await tool_names(client)
        (servers_dir / "later.yaml").write_text((servers_dir / "other.yaml").read_text())
        await eventually(await has("later_ping_other"), timeout=10, message="the new member never appeared")
        assert text_of(await client.call_tool("later_ping_other", {"message": "new"})) == "new"
        (servers_dir / "later.yaml").unlink()
        await eventually(await has("later_ping_other", False), timeout=10, message="the removed member stayed")
        assert changed.is_set()


def _true(value: object) -> object:
    async def done() -> object:
        return value

    return done()


@pytest.mark.gen_test(timeout=30)
async def test_the_shipped_workbench_composes_the_shipped_examples(gateway, base_url, servers_dir):
    shipped = Path(__file__).parent.parent.parent / "servers.d"
    for name in ("calculator_tools.py", "library_handlers.py", "calculator.yaml", "library.yaml", "workbench.yaml"):
        (servers_dir / name).write_bytes((shipped / name).read_bytes())
    for name in ("calculator", "library", "workbench"):
        assert await gateway.registry.load_file(servers_dir / f"{name}.yaml") is not None
    async with mcp_client(f"{base_url}/workbench/mcp", token("workbench", api_key="demo-key")) as client:
        assert {"calculator_calculate", "calculator_sum_slowly"} <= await tool_names(client)
        product = await client.call_tool("calculator_calculate", {"operation": "multiply", "a": 6, "b": 7})
        assert product.structured_content == {"result": 42}
        assert "Dune" in (await client.read_resource("library://catalog")).contents[0].text
        prompt = await client.get_prompt("lib_recommend", {"genre": "classics", "reader": "Ada"})
        assert "classics book for Ada" in prompt.messages[0].content.text
        ref = types.PromptReference(type="ref/prompt", name="lib_recommend")
        assert (await client.complete(ref, {"name": "genre", "value": "sc"})).completion.values == ["science fiction"]


@pytest.mark.gen_test(timeout=60)
async def test_compose_serves_each_members_curated_view_and_can_curate_its_own(
    upstream, base_url, servers_dir, gateway
):
    await upstream.wait_listening()
    (servers_dir / "remote.yaml").write_text(
        f"url: {upstream.url}\ntimeout: 5\ntools: {{exclude: [upstream_pid], rename: {{shout: yell}}}}\n"
    )
    (servers_dir / "all.yaml").write_text(COMPOSED + "tools: {exclude: [o_*]}\n")
    for name in ("remote", "all"):
        assert await gateway.registry.load_file(servers_dir / f"{name}.yaml") is not None
    async with mcp_client(all_url(base_url), all_token()) as client:
        names = await tool_names(client)
        assert "remote_yell" in names and not {"remote_shout", "remote_upstream_pid"} & names
        assert not any(name.startswith("o_") for name in names) and "everything_echo" in names
        assert text_of(await client.call_tool("remote_yell", {"text": "quiet"})) == "QUIET"
        for hidden in ("remote_upstream_pid", "o_ping_other"):
            with pytest.raises(MCPError, match="Unknown tool"):
                await client.call_tool(hidden, {"message": "x"})


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_per_session_member_gives_each_composed_session_its_own_child(gateway, base_url, servers_dir):
    (servers_dir / "own.yaml").write_text('command: ["${MCP_TEST_PYTHON}", stdio_child.py]\nper_session: true\n')
    (servers_dir / "solo.yaml").write_text("compose: [own]\n")
    for name in ("own", "solo"):
        assert await gateway.registry.load_file(servers_dir / f"{name}.yaml") is not None
    url, bearer = f"{base_url}/solo/mcp", token("solo", api_key=None)
    async with mcp_client(url, bearer) as first, mcp_client(url, bearer) as second:
        pids = [int(text_of(await client.call_tool("own_pid", {}))) for client in (first, second, first)]
    assert pids[0] != pids[1] and pids[0] == pids[2]


@pytest.mark.gen_test(timeout=30)
async def test_a_members_resource_updates_reach_the_composed_sessions_that_subscribed(upstream, base_url, gateway):
    heard: list[str] = []

    async def on_message(message) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            heard.append(str(message.params.uri))

    async with mcp_client(all_url(base_url), all_token(), message_handler=on_message) as client:
        sessions = gateway.registry.get("all").sessions
        await eventually(lambda: _true(any(s.standalone.attached for s in sessions)), message="no GET stream")
        with warnings.catch_warnings():  # removed only at 2026-07-28; this session speaks 2025-11-25
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.subscribe_resource("memo://readme")
        # The member's own route touches it: its subscribers on the composed route hear of it.
        async with mcp_client(f"{base_url}/everything/mcp") as direct:
            assert text_of(await direct.call_tool("touch", {"uri": "memo://readme"})) == "touched"
        await eventually(lambda: _true(heard == ["memo://readme"]), message="no resource update")
        await client.call_tool("everything_touch", {"uri": "memo://clock"})  # not subscribed: not heard
        await client.send_ping()
    assert heard == ["memo://readme"]
