"""How long a new servers.d file takes to go live (goal: under 250 ms).

Run from the repository root:

    .venv/bin/python bench/bench_reload.py [--files N]

Starts the gateway in this process on a temporary servers folder, then N times writes a new
definition file and polls `/health` (every 2 ms) until the server is listed, and prints the
median and worst time from the write to the server being live.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx2
import tornado.netutil

from mcp_tornado.server import Gateway
from mcp_tornado.settings import Settings

DEFINITION = """\
tools:
  - name: hello
    handler: reload_tools:hello
"""


async def main(files: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "reload_tools.py").write_text("async def hello(arguments, context):\n    return 'hi'\n")
        gateway = Gateway(Settings(servers_dir=directory, jwt_secret="x" * 32))
        port = await gateway.start(tornado.netutil.bind_sockets(0, "127.0.0.1"))
        timings = []
        try:
            async with httpx2.AsyncClient() as http:
                for i in range(files):
                    started = time.perf_counter()
                    (directory / f"new{i}.yaml").write_text(DEFINITION)
                    while f"new{i}" not in (await http.get(f"http://127.0.0.1:{port}/health")).json()["servers"]:
                        await asyncio.sleep(0.002)
                    timings.append((time.perf_counter() - started) * 1000)
        finally:
            await gateway.stop()
    print(f"{files} new files: median {statistics.median(timings):.1f} ms, worst {max(timings):.1f} ms to go live")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    asyncio.run(main(parser.parse_args().files))
