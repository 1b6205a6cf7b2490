"""A real headless browser for the tests: Debian's `chromium`, driven over the DevTools protocol.

`chromium --headless=new --remote-debugging-port=0` picks a free port and writes it to
`DevToolsActivePort` in its profile folder; the `page` fixture connects to its first tab with
Tornado's websocket client, on the test's own IOLoop (where the gateway runs too). No driver,
no Selenium: `Page` sends a command and waits for its answer, and keeps the page's uncaught
errors and console errors (`errors`) so a test can tell a broken script from a slow one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.ioloop
import tornado.websocket

from tests.conftest import eventually, wait_until

BROWSERS = ("chromium", "chromium-browser")  # Debian's name, and Ubuntu's
# Where a test's screenshots also go, for people (gitignored; see README, "Console").
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
COMMAND_TIMEOUT = 30.0


class DevToolsError(Exception):
    pass


class Page:
    """One browser tab over the DevTools protocol."""

    def __init__(self, socket: tornado.websocket.WebSocketClientConnection) -> None:
        self._socket = socket
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self._reader = asyncio.ensure_future(self._read())

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        answer = self._waiting[self._next_id] = asyncio.get_running_loop().create_future()
        await self._socket.write_message(json.dumps({"id": self._next_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(answer, COMMAND_TIMEOUT)
        if "error" in reply:
            raise DevToolsError(f"{method}: {reply['error']}")
        return reply["result"]

    async def _read(self) -> None:
        while (message := await self._socket.read_message()) is not None:
            data = json.loads(message)
            if "id" in data:
                waiter = self._waiting.pop(data["id"], None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                self.errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
            elif data.get("method") == "Runtime.consoleAPICalled" and data["params"]["type"] == "error":
                self.errors.append(" ".join(str(arg.get("value", "")) for arg in data["params"]["args"]))
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(DevToolsError("the browser went away"))

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, timeout: float = 10.0) -> Any:
        """Poll `expression` until it is truthy (a navigation in between counts as not yet)."""

        async def check() -> Any:
            try:
                return await self.evaluate(expression)
            except DevToolsError:
                return None  # the page was between two documents

        return await eventually(check, timeout=timeout, interval=0.05, message=f"never true: {expression}")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    async def screenshot(self, *paths: Path) -> bytes:
        png = base64.b64decode((await self.send("Page.captureScreenshot", format="png"))["data"])
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
        return png

    async def close(self) -> None:
        self._socket.close()
        await asyncio.wait_for(self._reader, COMMAND_TIMEOUT)


def _executable() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("the browser tests need Debian's chromium: `make test` installs it (apt-get install chromium)")


@pytest.fixture
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A headless chromium of its own (a fresh profile); yields its DevTools port."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = (profile.parent / f"{profile.name}.log").open("wb")
    command = [
        _executable(),
        "--headless=new",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-sync",
        "--disable-breakpad",
        "--window-size=1280,900",
        *(["--no-sandbox"] if os.geteuid() == 0 else []),  # chromium's sandbox refuses to run as root
        "about:blank",
    ]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    active = profile / "DevToolsActivePort"
    try:
        wait_until(
            lambda: process.poll() is not None or (active.exists() and active.read_text().count("\n") >= 1),
            timeout=30,
        )
        assert process.poll() is None, f"chromium exited ({process.returncode}); see {log.name}"
        yield int(active.read_text().splitlines()[0])
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def page(chromium: int, io_loop: tornado.ioloop.IOLoop) -> Iterator[Page]:
    """The browser's first tab, connected on the test's IOLoop, 1280x900, reporting its errors."""

    async def connect() -> Page:
        listing = await tornado.httpclient.AsyncHTTPClient().fetch(f"http://127.0.0.1:{chromium}/json/list")
        tab = next(t for t in json.loads(listing.body) if t["type"] == "page")
        opened = Page(await tornado.websocket.websocket_connect(tab["webSocketDebuggerUrl"], max_message_size=64 << 20))
        await opened.send("Runtime.enable")
        await opened.send("Page.enable")
        await opened.send(
            "Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False
        )
        return opened

    opened = io_loop.run_sync(connect)
    yield opened
    io_loop.run_sync(opened.close)
