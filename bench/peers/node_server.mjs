// The seed's stack: Express + the TypeScript SDK (`@modelcontextprotocol/sdk`), one tool `add(a, b)`.
//
//   node bench/peers/node_server.mjs PORT
//
// Stateful sessions (one `StreamableHTTPServerTransport` per session, `enableJsonResponse: true`),
// as the SDK's own example server does. Modules are resolved from NODE_PATH (the bench installs
// them into .tools/bench-node).
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.BENCH_NODE_MODULES, "noop.js"));
const express = require("express");
const { McpServer } = require("@modelcontextprotocol/sdk/server/mcp.js");
const { StreamableHTTPServerTransport } = require("@modelcontextprotocol/sdk/server/streamableHttp.js");
const { isInitializeRequest } = require("@modelcontextprotocol/sdk/types.js");
const { z } = require("zod");

function buildServer() {
  const server = new McpServer({ name: "bench", version: "1.0.0" });
  server.registerTool(
    "add",
    { description: "Add two numbers", inputSchema: { a: z.number(), b: z.number() } },
    async ({ a, b }) => ({ content: [{ type: "text", text: String(a + b) }] }),
  );
  return server;
}

const transports = {};
const app = express();
app.use(express.json({ limit: "4mb" }));

app.post("/mcp", async (req, res) => {
  const sessionId = req.headers["mcp-session-id"];
  let transport = sessionId ? transports[sessionId] : undefined;
  if (!transport) {
    if (sessionId || !isInitializeRequest(req.body)) {
      res.status(400).json({ jsonrpc: "2.0", error: { code: -32000, message: "Bad Request: no valid session" }, id: null });
      return;
    }
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: true,
      onsessioninitialized: (id) => { transports[id] = transport; },
    });
    transport.onclose = () => { if (transport.sessionId) delete transports[transport.sessionId]; };
    await buildServer().connect(transport);
  }
  await transport.handleRequest(req, res, req.body);
});

const session = async (req, res) => {
  const transport = transports[req.headers["mcp-session-id"]];
  if (!transport) { res.status(404).send("unknown session"); return; }
  await transport.handleRequest(req, res);
};
app.get("/mcp", session);
app.delete("/mcp", session);

app.listen(Number(process.argv[2]), "127.0.0.1");
