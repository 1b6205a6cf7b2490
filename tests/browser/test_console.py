"""The console in a real browser: log in, watch a stdio child crash and come back, no reload.

A child (`flaky.py`) refuses to start while a file named `broken` is in the definitions folder.
The test logs in through the form, reads the child's pid off the page (its stderr, shown to
admins), creates `broken` and kills the child: the supervisor's restarts fail fast until its
breaker opens, and the page, following the SSE feed, shows `crashed` with the child's last words.
Then `broken` goes and the definition is touched (as an operator fixing it would): `running`
again, on the same page load. A screenshot of the crashed state is kept as a test artifact.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from mcp_tornado import auth
from tests.browser.conftest import ARTIFACTS, Page
from tests.conftest import SECRET

FLAKY = """
import os, pathlib, sys
print(f"flaky: pid {os.getpid()} starting", file=sys.stderr, flush=True)
if pathlib.Path("broken").exists():
    print("flaky: fatal: ./broken is there, refusing to start", file=sys.stderr, flush=True)
    sys.exit(3)
from mcp.server.mcpserver import MCPServer
mcp = MCPServer("flaky")

@mcp.tool()
async def pid() -> int:
    return os.getpid()

mcp.run("stdio")
"""
DEFINITION = 'title: Flaky child\ncommand: ["${MCP_TEST_PYTHON}", flaky.py]\n'

STATE = "document.querySelector('tbody[data-server=\"flaky\"] .state')?.textContent"
ROW = "document.querySelector('tbody[data-server=\"flaky\"]')?.innerText || ''"


@pytest.fixture
def servers_dir(servers_dir: Path) -> Path:
    (servers_dir / "flaky.py").write_text(FLAKY)
    (servers_dir / "flaky.yaml").write_text(DEFINITION)
    return servers_dir


async def log_in(page: Page, base_url: str) -> None:
    await page.goto(f"{base_url}/console/login")
    admin = auth.mint(SECRET, admin=True, ttl=600)
    await page.evaluate(
        f"document.getElementById('token').value = {json.dumps(admin)}; document.getElementById('login-form').submit()"
    )
    await page.wait_for("location.pathname === '/' && document.getElementById('logout') !== null")


@pytest.mark.gen_test(timeout=120)
async def test_the_console_follows_a_child_crashing_and_coming_back_without_a_reload(
    base_url, servers_dir, page, tmp_path
):
    await log_in(page, base_url)
    await page.evaluate("window.sameDocument = true")  # gone if the page ever reloads
    await page.wait_for(f"{STATE} === 'running'", timeout=20)
    await page.wait_for("document.getElementById('live').textContent === 'live'")

    # The admin view: tools, the client snippet (URL and mcp.json), and the child's stderr.
    assert "Flaky child" in await page.evaluate(ROW)
    tools = "document.querySelector('tbody[data-server=\"everything\"] .tools').textContent"
    assert "echo" in await page.evaluate(tools)
    snippet = await page.evaluate(
        "document.querySelector('tbody[data-server=\"flaky\"] details.snippet pre').textContent"
    )
    assert f"{base_url}/flaky/mcp" in snippet and "Authorization: Bearer <TOKEN>" in snippet
    assert json.loads(snippet.split("mcp.json:\n", 1)[1])["mcpServers"]["flaky"]["url"] == f"{base_url}/flaky/mcp"
    stderr = await page.evaluate("document.querySelector('tbody[data-server=\"flaky\"] .stderr-lines').textContent")
    pid = int(re.findall(r"flaky: pid (\d+) starting", stderr)[-1])

    (servers_dir / "broken").write_text("")
    os.kill(pid, signal.SIGKILL)
    await page.wait_for(f"{STATE} === 'restarting'", timeout=10)
    await page.wait_for(f"{STATE} === 'crashed'", timeout=60)
    row = await page.evaluate(ROW)
    assert "refusing to start" in row  # the child's last words, open because it is down
    restarts = await page.evaluate("document.querySelector('tbody[data-server=\"flaky\"] .restarts').textContent")
    assert int(restarts) >= 5
    await page.screenshot(tmp_path / "console.png", ARTIFACTS / "console.png")

    (servers_dir / "broken").unlink()
    (servers_dir / "flaky.yaml").write_text(DEFINITION + "# fixed\n")
    await page.wait_for(f"{STATE} === 'running'", timeout=30)
    assert await page.evaluate("window.sameDocument === true")
    assert page.errors == []
    # The others were there all along.
    assert await page.evaluate("document.querySelector('tbody[data-server=\"everything\"] .state').textContent") == (
        "running"
    )
