"""`Telemetry`: what the request path records for `/metrics`, per application.

Each application has its own `prometheus_client.CollectorRegistry` (tests run many in one
process), holding the request latency histogram; `handlers.metrics` adds a collector that
reads sessions, streams, backend state, restarts and reloads from the hosting layer when
scraped, so none of that costs the request path anything.

A request costs two dict lookups, a bisect and three additions (`LatencyHistogram`).
Label values are bounded: server names come from the registry only (anything
else is `(unknown)`), JSON-RPC methods from the protocol's own list (anything else is
`(other)`), statuses as classes (`2xx`).
"""

from __future__ import annotations

import bisect
import collections
import functools
import itertools
import math
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import mcp_types
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from mcp_tornado.tracing import Tracing

# Seconds: an in-process tools/call takes well under a millisecond, a proxied one may take a minute.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# `rpc_method` for what is not one JSON-RPC request or notification.
NO_MESSAGE = "(none)"  # refused before its body was read, or a DELETE
STREAM = "(stream)"  # a GET: the session's SSE stream, observed when it ends
BATCH = "(batch)"
RESPONSE = "(response)"  # the client answering a request of ours (sampling, elicitation)
OTHER = "(other)"  # a method the protocol does not define: never a label of its own
UNKNOWN_SERVER = "(unknown)"
# HTTP methods that are labels of their own; any other (a scanner's `FOOA`) counts as `(other)`.
HTTP_METHODS = frozenset({"GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH"})


def _methods_of(union: Any) -> set[str]:
    """Every `method` literal of the request or notification types in `union` (a pydantic
    root model or a plain Union, nested as the protocol types nest them)."""
    found: set[str] = set()
    pending = [union]
    while pending:
        kind = pending.pop()
        fields = getattr(kind, "model_fields", None)
        if fields is not None and "root" in fields:
            pending.append(fields["root"].annotation)
        elif fields is not None and "method" in fields:
            found.update(a for a in typing.get_args(fields["method"].annotation) if isinstance(a, str))
        else:
            pending.extend(typing.get_args(kind))
    return found


# What a client may send, as the protocol defines it: the only JSON-RPC methods that become labels.
CLIENT_METHODS = frozenset(_methods_of(mcp_types.ClientRequest) | _methods_of(mcp_types.ClientNotification))


def rpc_method_of(http_method: str | None, messages: list[Any] | None, headers: Mapping[str, str]) -> str:
    """The `rpc_method` label of a request: the JSON-RPC method it carried, bounded.

    `messages` are the parsed messages (None when the body was not parsed here: a stateless
    2026-07-28 request names its method in `Mcp-Method`, which the SDK checks against the body).
    """
    if http_method == "GET":
        return STREAM
    if messages is None:
        method = headers.get("Mcp-Method") if http_method == "POST" else None
        return NO_MESSAGE if method is None else method if method in CLIENT_METHODS else OTHER
    if len(messages) != 1:
        return BATCH
    method = getattr(messages[0], "method", None)
    if method is None:
        return RESPONSE
    return method if method in CLIENT_METHODS else OTHER


def tool_name_of(messages: list[Any] | None, headers: Mapping[str, str]) -> str | None:
    """The tool a `tools/call` names (for traces only: never a metric label)."""
    if messages is None:
        return headers.get("Mcp-Name") if headers.get("Mcp-Method") == "tools/call" else None
    if len(messages) == 1 and getattr(messages[0], "method", None) == "tools/call":
        params = getattr(messages[0], "params", None)
        name = params.get("name") if isinstance(params, dict) else None
        return name if isinstance(name, str) else None
    return None


@functools.lru_cache(maxsize=16)
def status_class(status: int) -> str:
    return f"{status // 100}xx"


class RequestCounter:
    """MCP route requests by (server, HTTP method, status): `mcp_tornado_http_requests_total`."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str, int]] = collections.Counter()

    def count(self, server: str, method: str, status: int) -> None:
        self.counts[(server, method, status)] += 1


class LatencyHistogram:
    """`mcp_tornado_request_duration_seconds`, by (server, HTTP method, JSON-RPC method, status class).

    A prometheus_client collector: the request path adds to plain per-series bucket counts (a
    bisect and two additions, on the loop's thread only), and the samples are built when scraped.
    `prometheus_client.Histogram.observe` takes a lock and walks every bucket, several times the cost.
    """

    NAME = "mcp_tornado_request_duration_seconds"
    LABELS = ("server", "method", "rpc_method", "status")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self._bounds = buckets
        self._les = [floatToGoString(b) for b in (*buckets, math.inf)]
        # label values -> a count per bucket (not cumulative; the last one is +Inf's own), then the sum
        self.series: dict[tuple[str, str, str, str], list[float]] = {}

    def observe(self, key: tuple[str, str, str, str], seconds: float) -> None:
        counts = self.series.get(key)
        if counts is None:
            counts = self.series[key] = [0] * (len(self._bounds) + 1) + [0.0]
        counts[bisect.bisect_left(self._bounds, seconds)] += 1
        counts[-1] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            self.NAME,
            "MCP route requests: seconds from the request's arrival to its answer's end (a GET stream: its life),"
            " by server, HTTP method, JSON-RPC method and status class.",
            labels=self.LABELS,
        )
        for key, counts in self.series.items():
            cumulative = list(itertools.accumulate(counts[:-1]))
            family.add_metric(list(key), list(zip(self._les, cumulative, strict=True)), counts[-1])
        yield family


class Telemetry:
    """One application's metrics registry and request instruments, and its tracing (None: off)."""

    def __init__(self, tracing: Tracing | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = RequestCounter()
        self.latency = LatencyHistogram(LATENCY_BUCKETS)
        self.registry.register(self.latency)
        self.tracing = tracing

    def observe(self, server: str, http_method: str, rpc_method: str, status: int, seconds: float) -> None:
        """One finished MCP request: counted, and its duration observed."""
        if http_method not in HTTP_METHODS:
            http_method = OTHER
        self.requests.counts[(server, http_method, status)] += 1
        self.latency.observe((server, http_method, rpc_method, status_class(status)), seconds)

    def forget(self, servers: Iterable[str]) -> None:
        """Drop the series of servers that are gone, so a churn of names cannot grow the registry."""
        gone = set(servers)
        for key in [key for key in self.latency.series if key[0] in gone]:
            del self.latency.series[key]
        for counted in [counted for counted in self.requests.counts if counted[0] in gone]:
            del self.requests.counts[counted]

    def shutdown(self) -> None:
        if self.tracing is not None:
            self.tracing.shutdown()
