"""mcp-tornado: many MCP servers behind one port, on Tornado.

The package in layers; each imports only its own modules and those below it, with no cycles
(`make lint` runs tools/check_layers.py to keep it so):

    top        cli, server (the process: Gateway), app (the route table), http_server,
      |        workers (N processes on one port)
    handlers   HTTP only: check, read, ask the hosted server, write what comes back
      |        (mcp, sse_response, legacy_sse, admin, openapi, oauth, health, metrics,
      |        tools_http + tools_document, console + console_feed, base)
    hosting    registry, hosted (a session table meets a backend: who may open or resume
      |        a session, readiness, caps on work in flight), watcher, store, policy,
      |        shared_sessions (the Redis store, with MCP_REDIS_URL)
      +------------------------------+
    transport                      backends
      the MCP wire of one session:   in-process, app, stdio, remote, supervisor, link pool,
                                     curation, composed (members found through a resolver);
      session, session_table,        they depend on definitions only; the transport
      exchange, jsonrpc, sse,        declares the Protocols it needs (`protocols.py`) and
      legacy, stateless, protocols   never imports a backend
      +------------------------------+
    bottom     definitions (YAML -> typed, frozen specs), auth (+ keys, keyring, revocations,
               watched_file), errors, settings, expansion, importer, logs, rate_limit,
               request_info, telemetry, tracing, curation_rules, deadlines, compat (the only
               private APIs we touch)

A request reads straight down: `handlers.mcp` -> `hosting.hosted` -> `transport.session` ->
the SDK's `ServerRunner` -> the backend's lowlevel `Server` -> a handler, a child, an upstream.
"""

__version__ = "0.1.0"
