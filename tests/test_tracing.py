"""OpenTelemetry tracing, configured by the OTEL_* variables, exported over OTLP/HTTP to a tiny
in-process collector (a Tornado handler decoding the protobuf with opentelemetry-proto)."""

from __future__ import annotations

import gzip
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from mcp_tornado.server import Gateway
from mcp_tornado.settings import Settings
from tests.conftest import SECRET, TEST_ENVIRON, eventually, token


class Collector:
    """Spans received, each with its resource's attributes."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Span]] = []
        self.port = 0

    def find(self, name: str, **attributes: Any) -> list[Span]:
        return [
            span
            for _, span in self.spans
            if span.name == name and all(attributes_of(span).get(k) == v for k, v in attributes.items())
        ]


def attributes_of(item: Any) -> dict[str, Any]:
    values = {}
    for attribute in item.attributes:
        kind = attribute.value.WhichOneof("value")
        values[attribute.key] = getattr(attribute.value, kind) if kind else None
    return values


class TracesHandler(tornado.web.RequestHandler):
    def initialize(self, collector: Collector) -> None:
        self.collector = collector

    def post(self) -> None:
        body = self.request.body
        if self.request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = attributes_of(resource_spans.resource)
            for scope_spans in resource_spans.scope_spans:
                self.collector.spans.extend((resource, span) for span in scope_spans.spans)
        self.set_header("Content-Type", "application/x-protobuf")
        self.finish(ExportTraceServiceResponse().SerializeToString())


@pytest.fixture
def collector(io_loop: tornado.ioloop.IOLoop) -> Iterator[Collector]:
    found = Collector()
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(
        tornado.web.Application([(r"/v1/traces", TracesHandler, {"collector": found})])
    )
    server.add_sockets(sockets)
    found.port = sockets[0].getsockname()[1]
    yield found
    server.stop()


@pytest.fixture
def gateway(io_loop: tornado.ioloop.IOLoop, servers_dir: Path, collector: Collector) -> Iterator[Gateway]:
    """The conftest's gateway, with OTEL_* in its environment pointing at the collector."""
    environ = {
        "JWT_SECRET": SECRET,
        **TEST_ENVIRON,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_SERVICE_NAME": "gateway-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "20",
    }
    gw = Gateway(Settings.from_environ(environ, servers_dir=servers_dir))
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    io_loop.run_sync(lambda: gw.start(sockets))
    yield gw
    io_loop.run_sync(gw.stop)


async def call_tool(url: str, bearer: str, tool: str, arguments: dict[str, Any], traceparent: str) -> Any:
    """The official client, with a W3C `traceparent` on every request it sends."""
    http_headers = {"Authorization": f"Bearer {bearer}", "traceparent": traceparent}
    async with httpx2.AsyncClient(headers=http_headers, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await session.call_tool(tool, arguments)


def new_traceparent() -> tuple[str, bytes, bytes]:
    trace_id, span_id = secrets.token_bytes(16), secrets.token_bytes(8)
    return f"00-{trace_id.hex()}-{span_id.hex()}-01", trace_id, span_id


@pytest.mark.gen_test(timeout=60)
async def test_a_call_through_a_url_upstream_is_one_trace_from_the_client_to_the_upstream(
    base_url, servers_dir: Path, collector: Collector
):
    # The upstream is this gateway's own `other` route: its side of the call is traced too. It
    # starts lazily, so our first request is what opens the link to it.
    (servers_dir / "loop.yaml").write_text(
        f"url: {base_url}/other/mcp\nstart: lazy\nheaders: {{Authorization: 'Bearer {token('other', api_key=None)}'}}\n"
    )

    async def served() -> bool:
        async with httpx2.AsyncClient() as http:
            return "loop" in (await http.get(f"{base_url}/health")).json()["servers"]

    await eventually(served, timeout=20, message="the url: upstream was never loaded")
    traceparent, trace_id, client_span_id = new_traceparent()
    result = await call_tool(
        f"{base_url}/loop/mcp", token("loop", api_key=None), "ping_other", {"message": "hi"}, traceparent
    )
    assert not result.is_error

    async def exported() -> bool:  # all three: spans end (and are exported) inside out
        found = (
            collector.find("tools/call ping_other", **{"mcp_tornado.server": "other"}),
            collector.find("tools/call loop", **{"mcp_tornado.server": "loop"}),
            collector.find("tools/call ping_other", **{"mcp_tornado.server": "loop"}),
        )
        return all(any(s.trace_id == trace_id for s in spans) for spans in found)

    await eventually(exported, timeout=10, message=lambda: f"spans so far: {[s.name for _, s in collector.spans]}")
    request = one(collector.find("tools/call ping_other", **{"mcp_tornado.server": "loop"}), trace_id)
    assert request.kind == Span.SPAN_KIND_SERVER
    assert request.parent_span_id == client_span_id  # the client's traceparent was honoured
    attributes = attributes_of(request)
    assert attributes["mcp.method.name"] == "tools/call"
    assert attributes["gen_ai.tool.name"] == "ping_other"
    assert attributes["http.response.status_code"] == 200
    assert len(attributes["mcp.session.id"]) >= 32
    upstream = one(collector.find("tools/call loop", **{"mcp_tornado.server": "loop"}), trace_id)
    assert upstream.kind == Span.SPAN_KIND_CLIENT and upstream.parent_span_id == request.span_id
    assert attributes_of(upstream)["gen_ai.tool.name"] == "ping_other"
    # The upstream's request carried a traceparent naming our upstream span.
    inner = one(collector.find("tools/call ping_other", **{"mcp_tornado.server": "other"}), trace_id)
    assert inner.parent_span_id == upstream.span_id
    # The link's own opening (started by our first request, living on) is not part of our trace.
    assert [s for s in collector.find("initialize", **{"mcp_tornado.server": "other"}) if s.trace_id == trace_id] == []
    assert collector.find("initialize", **{"mcp_tornado.server": "other"})  # it is a trace of its own
    resource = next(resource for resource, span in collector.spans if span.span_id == request.span_id)
    assert resource["service.name"] == "gateway-under-test"


@pytest.mark.gen_test(timeout=60)
async def test_a_stdio_child_call_gets_a_child_span(base_url, collector: Collector):
    traceparent, trace_id, client_span_id = new_traceparent()
    result = await call_tool(
        f"{base_url}/child/mcp", token("child", api_key=None), "add", {"a": 1, "b": 2}, traceparent
    )
    assert not result.is_error

    async def exported() -> bool:  # both: the request's span ends (and is exported) after its child's
        found = (
            collector.find("tools/call child"),
            collector.find("tools/call add", **{"mcp_tornado.server": "child"}),
        )
        return all(any(s.trace_id == trace_id for s in spans) for spans in found)

    await eventually(exported, timeout=10, message=lambda: f"spans so far: {[s.name for _, s in collector.spans]}")
    request = one(collector.find("tools/call add", **{"mcp_tornado.server": "child"}), trace_id)
    assert request.parent_span_id == client_span_id
    upstream = one(collector.find("tools/call child"), trace_id)
    assert upstream.parent_span_id == request.span_id
    assert attributes_of(upstream)["mcp.method.name"] == "tools/call"
    # Every request of the session is a span of its own: initialize and the initialized notification too.
    assert collector.find("initialize") and collector.find("notifications/initialized")


def one(spans: list[Span], trace_id: bytes) -> Span:
    matching = [span for span in spans if span.trace_id == trace_id]
    assert len(matching) == 1, matching
    return matching[0]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: expected one of otlp, console, none"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT: must be an http"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_BSP_SCHEDULE_DELAY": "soon"}, "OTEL_BSP_SCHEDULE_DELAY"),
    ],
)
def test_a_bad_otel_variable_stops_start_up_naming_it(servers_dir, variables, message):
    environ = {**os.environ, "JWT_SECRET": SECRET, **variables}
    done = subprocess.run(
        [sys.executable, "-m", "mcp_tornado", "serve", "--port", "0", "--servers-dir", str(servers_dir)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
