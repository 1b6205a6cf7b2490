"""`GET /metrics`: Prometheus text exposition of requests, sessions, backend health and stuck threads.

Counting a request is one dict increment in `McpHandler.on_finish`; everything else is read
from the registry when scraped. No secrets, and server names only from the registry (never
from a request path), so a scanner cannot blow up the label space.
"""

from __future__ import annotations

from collections.abc import Iterable

from mcp_tornado.backends.state import BackendState
from mcp_tornado.handlers.base import BaseHandler
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.telemetry import RequestCounter


def _escape(value: object) -> str:
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


def _family(name: str, kind: str, help_: str, samples: Iterable[tuple[str, object]]) -> list[str]:
    """One metric's HELP and TYPE, then all of its samples together, as the text format wants."""
    return [
        f"# HELP {name} {help_}",
        f"# TYPE {name} {kind}",
        *(f"{name}{labels} {value}" for labels, value in samples),
    ]


def _with_worker(line: str, worker: int) -> str:
    """A sample line (`name{labels} value` or `name value`) with a `worker` label added last."""
    if line.startswith("#"):
        return line
    sample, value = line.rsplit(" ", 1)
    name, _, labels = sample.partition("{")
    labels = labels.removesuffix("}")
    return f'{name}{{{labels + "," if labels else ""}worker="{worker}"}} {value}'


def exposition(registry: ServerRegistry, counter: RequestCounter) -> str:
    requests = [
        (_labels(server=server, method=method, status=status), value)
        for (server, method, status), value in sorted(counter.counts.items())
    ]
    lines = _family(
        "mcp_tornado_http_requests_total", "counter", "MCP route requests by server, HTTP method and status.", requests
    )
    servers = [(hosted, hosted.backend.describe()) for hosted in registry]
    per_server = [(_labels(server=hosted.name, kind=info["kind"]), hosted, info) for hosted, info in servers]
    threaded = [(labels, info) for labels, _, info in per_server if "abandoned_threads" in info]
    lines += _family(
        "mcp_tornado_sessions",
        "gauge",
        "Live sessions per hosted server.",
        [(labels, len(hosted.sessions)) for labels, hosted, _ in per_server],
    )
    lines += _family(
        "mcp_tornado_requests_in_flight",
        "gauge",
        "JSON-RPC requests being served per hosted server.",
        [(labels, hosted.in_flight) for labels, hosted, _ in per_server],
    )
    lines += _family(
        "mcp_tornado_server_up",
        "gauge",
        "1 when the server's backend can take requests.",
        [(labels, 0 if BackendState(info["state"]).down else 1) for labels, _, info in per_server],
    )
    lines += _family(
        "mcp_tornado_backend_restarts_total",
        "counter",
        "Restarts of a server's child process or upstream link.",
        [(labels, info.get("restarts") or 0) for labels, _, info in per_server],
    )
    lines += _family(
        "mcp_tornado_abandoned_threads",
        "gauge",
        "Sync handler threads still running past their timeout, per server.",
        [(labels, info["abandoned_threads"]) for labels, info in threaded],
    )
    lines += _family(
        "mcp_tornado_abandoned_threads_total",
        "counter",
        "Sync handler threads written off after a timeout, per server.",
        [(labels, info["abandoned_threads_total"]) for labels, info in threaded],
    )
    lines += _family(
        "mcp_tornado_definition_problems",
        "gauge",
        "Definition files that fail validation.",
        [("", len(registry.problems))],
    )
    if registry.settings.workers > 1:  # several processes answer on one port: say which one this is
        lines = [_with_worker(line, registry.settings.worker_id) for line in lines]
    return "\n".join(lines) + "\n"


class MetricsHandler(BaseHandler):
    def initialize(self, registry: ServerRegistry, counter: RequestCounter) -> None:
        self.registry = registry
        self.counter = counter

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(exposition(self.registry, self.counter))
