"""`GET /metrics`: Prometheus text exposition of requests, sessions, backend health and stuck threads.

Counting a request is one dict increment in `McpHandler.on_finish`; everything else is read
from the registry when scraped. No secrets, and server names only from the registry (never
from a request path), so a scanner cannot blow up the label space.
"""

from __future__ import annotations

import collections

from mcp_tornado.handlers.base import BaseHandler
from mcp_tornado.hosting.registry import ServerRegistry


class RequestCounter:
    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str, int]] = collections.Counter()

    def count(self, server: str, method: str, status: int) -> None:
        self.counts[(server, method, status)] += 1


def _escape(value: object) -> str:
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


def exposition(registry: ServerRegistry, counter: RequestCounter) -> str:
    lines = [
        "# HELP mcp_tornado_http_requests_total MCP route requests by server, HTTP method and status.",
        "# TYPE mcp_tornado_http_requests_total counter",
    ]
    for (server, method, status), value in sorted(counter.counts.items()):
        lines.append(f"mcp_tornado_http_requests_total{_labels(server=server, method=method, status=status)} {value}")
    lines += [
        "# HELP mcp_tornado_sessions Live sessions per hosted server.",
        "# TYPE mcp_tornado_sessions gauge",
        "# HELP mcp_tornado_server_up 1 when the server's backend can take requests.",
        "# TYPE mcp_tornado_server_up gauge",
        "# HELP mcp_tornado_backend_restarts_total Restarts of a server's child process or upstream link.",
        "# TYPE mcp_tornado_backend_restarts_total counter",
    ]
    threaded = []  # (labels, describe()) of the servers that run sync handlers on threads
    for hosted in registry:
        info = hosted.backend.describe()
        up = 0 if info["state"] in ("restarting", "crashed") else 1
        labels = _labels(server=hosted.name, kind=info["kind"])
        lines.append(f"mcp_tornado_sessions{labels} {len(hosted.sessions)}")
        lines.append(f"mcp_tornado_server_up{labels} {up}")
        lines.append(f"mcp_tornado_backend_restarts_total{labels} {info.get('restarts') or 0}")
        if "abandoned_threads" in info:
            threaded.append((labels, info))
    lines += [
        "# HELP mcp_tornado_abandoned_threads Sync handler threads still running past their timeout, per server.",
        "# TYPE mcp_tornado_abandoned_threads gauge",
    ]
    lines += [f"mcp_tornado_abandoned_threads{labels} {info['abandoned_threads']}" for labels, info in threaded]
    lines += [
        "# HELP mcp_tornado_abandoned_threads_total Sync handler threads written off after a timeout, per server.",
        "# TYPE mcp_tornado_abandoned_threads_total counter",
    ]
    lines += [
        f"mcp_tornado_abandoned_threads_total{labels} {info['abandoned_threads_total']}" for labels, info in threaded
    ]
    lines += [
        "# HELP mcp_tornado_definition_problems Definition files that fail validation.",
        "# TYPE mcp_tornado_definition_problems gauge",
        f"mcp_tornado_definition_problems {len(registry.problems)}",
    ]
    return "\n".join(lines) + "\n"


class MetricsHandler(BaseHandler):
    def initialize(self, registry: ServerRegistry, counter: RequestCounter) -> None:
        self.registry = registry
        self.counter = counter

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(exposition(self.registry, self.counter))
