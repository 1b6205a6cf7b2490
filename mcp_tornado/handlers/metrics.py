"""`GET /metrics`: Prometheus text exposition (`prometheus_client`) of the app's registry.

The request path only observes its latency histogram and counts (`telemetry.Telemetry`); every
gauge and the counters the hosting layer keeps (sessions, GET streams, requests in flight,
backend up, restarts, reloads, stuck threads, definition problems) are read from the registry
by `GatewayCollector` when scraped. No secrets, and server names only from the registry (never
from a request path), so a scanner cannot blow up the label space. With more than one worker
every sample carries `worker="n"`.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from mcp_tornado.backends.state import BackendState
from mcp_tornado.handlers.base import BaseHandler
from mcp_tornado.hosting.registry import ServerRegistry
from mcp_tornado.telemetry import UNKNOWN_SERVER, Telemetry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class GatewayCollector:
    """What `/metrics` reads from the hosting layer at scrape time (a `prometheus_client` collector);
    `make_app` registers one in the app's registry."""

    def __init__(self, registry: ServerRegistry, telemetry: Telemetry) -> None:
        self.registry = registry
        self.telemetry = telemetry

    def collect(self) -> Iterator[Metric]:
        telemetry, registry = self.telemetry, self.registry
        gone = {key[0] for key in telemetry.requests.counts} - {h.name for h in registry} - {UNKNOWN_SERVER}
        if gone:
            telemetry.forget(gone)
        requests = CounterMetricFamily(
            "mcp_tornado_http_requests", "MCP route requests by server, HTTP method and status.",
            labels=("server", "method", "status"),
        )  # fmt: skip
        for (server, method, status), value in sorted(telemetry.requests.counts.items()):
            requests.add_metric((server, method, str(status)), value)
        yield requests
        labels = ("server", "kind")
        sessions = GaugeMetricFamily("mcp_tornado_sessions", "Live sessions per hosted server.", labels=labels)
        streams = GaugeMetricFamily(
            "mcp_tornado_get_streams", "Sessions with their GET (SSE) stream open, per hosted server.", labels=labels
        )
        in_flight = GaugeMetricFamily(
            "mcp_tornado_requests_in_flight", "JSON-RPC requests being served per hosted server.", labels=labels
        )
        up = GaugeMetricFamily("mcp_tornado_server_up", "1 when the server's backend can take requests.", labels=labels)
        restarts = CounterMetricFamily(
            "mcp_tornado_backend_restarts", "Restarts of a server's child process or upstream link.", labels=labels
        )
        abandoned = GaugeMetricFamily(
            "mcp_tornado_abandoned_threads", "Sync handler threads still running past their timeout, per server.",
            labels=labels,
        )  # fmt: skip
        abandoned_total = CounterMetricFamily(
            "mcp_tornado_abandoned_threads", "Sync handler threads written off after a timeout, per server.",
            labels=labels,
        )  # fmt: skip
        for hosted in registry:
            info = hosted.backend.describe()
            values = (hosted.name, str(info["kind"]))
            sessions.add_metric(values, len(hosted.sessions))
            streams.add_metric(values, sum(1 for session in hosted.sessions if session.standalone.attached))
            in_flight.add_metric(values, hosted.in_flight)
            up.add_metric(values, 0 if BackendState(info["state"]).down else 1)
            restarts.add_metric(values, info.get("restarts") or 0)
            if "abandoned_threads" in info:
                abandoned.add_metric(values, info["abandoned_threads"])
                abandoned_total.add_metric(values, info["abandoned_threads_total"])
        yield from (sessions, streams, in_flight, up, restarts, abandoned, abandoned_total)
        reloads = CounterMetricFamily(
            "mcp_tornado_reloads",
            "Definition files applied (`applied`: a server loaded or replaced) or refused (`failed`), by server.",
            labels=("server", "result"),
        )
        for (server, result), value in sorted(registry.reloads.items()):
            reloads.add_metric((server, result), value)
        yield reloads
        problems = GaugeMetricFamily("mcp_tornado_definition_problems", "Definition files that fail validation.")
        problems.add_metric((), len(registry.problems))
        yield problems


class WorkerLabelled:
    """Every sample of `registry`, with `worker="n"` added (several processes answer on one port)."""

    def __init__(self, registry: CollectorRegistry, worker: int) -> None:
        self.registry = registry
        self.worker = str(worker)

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            metric.samples = [
                Sample(s.name, {**s.labels, "worker": self.worker}, s.value, s.timestamp, s.exemplar)
                for s in metric.samples
            ]
            yield metric


def exposition(registry: ServerRegistry, telemetry: Telemetry) -> bytes:
    source: CollectorRegistry | WorkerLabelled = telemetry.registry
    if registry.settings.workers > 1:  # several processes answer on one port: say which one this is
        source = WorkerLabelled(telemetry.registry, registry.settings.worker_id)
    return generate_latest(source)


class MetricsHandler(BaseHandler):
    def initialize(self, registry: ServerRegistry, telemetry: Telemetry) -> None:
        self.registry = registry
        self.telemetry = telemetry

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(exposition(self.registry, self.telemetry))
