"""The floor: a bare Tornado handler that parses the JSON-RPC body and answers a fixed result.

    python bench/peers/floor.py PORT

No MCP, no sessions, no auth: what one Tornado process on one core does for a POST that carries
JSON in and JSON out. mcp-tornado cannot be faster than this; the benchmark reports how close it is.
"""

from __future__ import annotations

import asyncio
import json
import sys

import tornado.web

RESULT = {"content": [{"type": "text", "text": "3"}], "isError": False}


class Floor(tornado.web.RequestHandler):
    def post(self) -> None:
        message = json.loads(self.request.body)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"jsonrpc": "2.0", "id": message.get("id"), "result": RESULT}))


async def main(port: int) -> None:
    app = tornado.web.Application([(r"/mcp", Floor)])
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
