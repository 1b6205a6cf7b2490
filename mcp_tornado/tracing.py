"""OpenTelemetry tracing: one span per MCP request, child spans for upstream calls.

Off unless the `otel` extra is installed (`pip install 'mcp-tornado[otel]'`: the SDK and the
OTLP/HTTP exporter) and the standard variables ask for it: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), or `OTEL_TRACES_EXPORTER=otlp|console`; never with
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. The variables are read from
`Settings.environ` (`tracing_from`), and a bad value stops start-up naming the variable.

Each application gets its own `TracerProvider` (never the global one: tests run many gateways
in one process, and a global provider would put the SDK's own middleware back on every
request; see `backends.base.own_server`). The request span is made current in the request's
task, so whatever runs for it (a backend, the `mcp` client towards an upstream) sees it;
`client_span` and `inject` find the tracer through a context variable, and cost one lookup
when tracing is off. The `mcp` client already carries the current trace context to upstreams
in `params._meta` (SEP-414); HTTP upstreams also get a `traceparent` header.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import urllib.parse
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mcp_tornado import __version__
from mcp_tornado.settings import Settings, SettingsError

logger = logging.getLogger(__name__)

PROPAGATOR = TraceContextTextMapPropagator()  # W3C traceparent / tracestate, whatever OTEL_PROPAGATORS says
DEFAULT_ENDPOINT = "http://localhost:4318"
EXPORTERS = ("otlp", "console")
SAMPLERS = (
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "always_on",
    "always_off",
    "traceidratio",
)
# The tracer of the request being served (set with its span), for spans deeper down.
_ACTIVE: contextvars.ContextVar[trace.Tracer | None] = contextvars.ContextVar("mcp_tornado_tracer", default=None)


@dataclasses.dataclass(frozen=True)
class TracingConfig:
    exporter: str = "otlp"
    endpoint: str = f"{DEFAULT_ENDPOINT}/v1/traces"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    timeout: float | None = None  # seconds per export
    service_name: str = "mcp-tornado"
    resource: Mapping[str, str] = dataclasses.field(default_factory=dict)
    sampler: str = "parentbased_always_on"
    sampler_ratio: float = 1.0
    schedule_delay_ms: float = 5000.0
    max_queue_size: int = 2048
    max_export_batch_size: int = 512
    export_timeout_ms: float = 30000.0


def config_from(environ: Mapping[str, str]) -> TracingConfig | None:
    """What the OTEL_* variables ask for; None when they ask for no tracing. Raises `SettingsError`."""

    def get(name: str) -> str | None:
        value = environ.get(name, "").strip()
        return value or None

    if (get("OTEL_SDK_DISABLED") or "false").lower() == "true":
        return None
    endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base = get("OTEL_EXPORTER_OTLP_ENDPOINT")
    exporters = [e.strip().lower() for e in (get("OTEL_TRACES_EXPORTER") or "").split(",") if e.strip()]
    if "none" in exporters or (not exporters and endpoint is None and base is None):
        return None
    unknown = [e for e in exporters if e not in EXPORTERS]
    if unknown or len(exporters) > 1:
        raise SettingsError(f"OTEL_TRACES_EXPORTER: expected one of otlp, console, none; got {','.join(exporters)}")
    if endpoint is None:  # the signal path is appended to the base endpoint only (the spec's rule)
        endpoint = (base or DEFAULT_ENDPOINT).rstrip("/") + "/v1/traces"
    if urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
        raise SettingsError(f"OTEL_EXPORTER_OTLP_ENDPOINT: must be an http:// or https:// URL, got {endpoint!r}")
    sampler = (get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").lower()
    if sampler not in SAMPLERS:
        raise SettingsError(f"OTEL_TRACES_SAMPLER: expected one of {', '.join(SAMPLERS)}; got {sampler!r}")
    return TracingConfig(
        exporter=exporters[0] if exporters else "otlp",
        endpoint=endpoint,
        headers=_pairs("OTEL_EXPORTER_OTLP_TRACES_HEADERS", get("OTEL_EXPORTER_OTLP_TRACES_HEADERS"))
        or _pairs("OTEL_EXPORTER_OTLP_HEADERS", get("OTEL_EXPORTER_OTLP_HEADERS")),
        timeout=_optional(environ, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        or _optional(environ, "OTEL_EXPORTER_OTLP_TIMEOUT"),
        service_name=get("OTEL_SERVICE_NAME") or "mcp-tornado",
        resource=_pairs("OTEL_RESOURCE_ATTRIBUTES", get("OTEL_RESOURCE_ATTRIBUTES")),
        sampler=sampler,
        sampler_ratio=_number(environ, "OTEL_TRACES_SAMPLER_ARG", 1.0),
        schedule_delay_ms=_number(environ, "OTEL_BSP_SCHEDULE_DELAY", 5000.0),
        max_queue_size=int(_number(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 2048)),
        max_export_batch_size=int(_number(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)),
        export_timeout_ms=_number(environ, "OTEL_BSP_EXPORT_TIMEOUT", 30000.0),
    )


def _pairs(name: str, raw: str | None) -> dict[str, str]:
    """`key=value,key2=value2`, percent-decoded (the OTEL_*_HEADERS and OTEL_RESOURCE_ATTRIBUTES form)."""
    pairs: dict[str, str] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{name}: expected key=value pairs separated by commas")
        pairs[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return pairs


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: not a number") from None
    if not 0 <= value < float("inf"):
        raise SettingsError(f"{name}={raw!r}: must be a finite number, not negative")
    return value


def _optional(environ: Mapping[str, str], name: str) -> float | None:
    """A timeout in milliseconds (the spec's unit), as seconds; None when unset."""
    value = _number(environ, name, -1.0)
    return None if value < 0 else value / 1000


class Tracing:
    """An application's tracer provider and its exporter (a batch processor's thread)."""

    def __init__(self, config: TracingConfig, *, worker_id: int = 0) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace import sampling as samplers
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

        ratio = config.sampler_ratio
        sampler = {
            "always_on": samplers.ALWAYS_ON,
            "always_off": samplers.ALWAYS_OFF,
            "traceidratio": samplers.TraceIdRatioBased(ratio),
            "parentbased_always_on": samplers.ParentBased(samplers.ALWAYS_ON),
            "parentbased_always_off": samplers.ParentBased(samplers.ALWAYS_OFF),
            "parentbased_traceidratio": samplers.ParentBasedTraceIdRatio(ratio),
        }[config.sampler]
        resource = Resource(
            {
                "service.version": __version__,
                **config.resource,
                "service.name": config.service_name,
                "service.instance.id": f"worker-{worker_id}",
                "telemetry.sdk.language": "python",
            }
        )
        self.provider = TracerProvider(sampler=sampler, resource=resource, shutdown_on_exit=False)
        exporter: SpanExporter
        if config.exporter == "console":
            exporter = ConsoleSpanExporter(service_name=config.service_name)
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=config.endpoint, headers=dict(config.headers), timeout=config.timeout)
        self.provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=config.max_queue_size,
                schedule_delay_millis=config.schedule_delay_ms,
                max_export_batch_size=config.max_export_batch_size,
                export_timeout_millis=config.export_timeout_ms,
            )
        )
        self.tracer = self.provider.get_tracer("mcp_tornado", __version__)
        self.config = config

    def start_request(self, headers: Mapping[str, Any], name: str, attributes: Mapping[str, Any]) -> Span:
        """The span of one HTTP request, made current in the calling task (the request's own:
        nothing to undo, the task ends with the request). A `traceparent` header is its parent."""
        parent = PROPAGATOR.extract(headers)
        span = self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        otel_context.attach(trace.set_span_in_context(span, parent))
        _ACTIVE.set(self.tracer)
        return span

    def shutdown(self) -> None:
        """Export what is left, stop the exporter's thread."""
        self.provider.shutdown()


def end_request(
    span: Span, *, http_method: str, rpc_method: str, tool: str | None, session_id: str | None, status: int
) -> None:
    """Finish a request span: its final name (`tools/call echo`), what was learnt, the status."""
    name = f"{http_method} {rpc_method}" if rpc_method.startswith("(") else rpc_method
    span.update_name(f"{name} {tool}" if tool else name)
    span.set_attribute("mcp.method.name", rpc_method)
    span.set_attribute("http.response.status_code", status)
    if tool is not None:
        span.set_attribute("gen_ai.tool.name", tool)
    if session_id is not None:
        span.set_attribute("mcp.session.id", session_id)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
    span.end()


def tracing_from(settings: Settings) -> Tracing | None:
    """The application's tracing, when the OTEL_* variables ask for it and the extra is installed."""
    config = config_from(settings.environ)
    if config is None:
        return None
    try:
        return Tracing(config, worker_id=settings.worker_id)
    except ImportError as exc:
        logger.warning(
            "OTEL_* variables ask for tracing, but mcp-tornado[otel] is not installed (%s): tracing is off", exc
        )
        return None


@contextlib.contextmanager
def client_span(name: str, attributes: Mapping[str, Any]) -> Iterator[Span | None]:
    """A child span of the current request for a call it makes (an upstream); nothing when untraced."""
    tracer = _ACTIVE.get()
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(
        name, kind=SpanKind.CLIENT, attributes={k: v for k, v in attributes.items() if v is not None}
    ) as span:
        yield span


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's `traceparent` (and `tracestate`) to outgoing HTTP headers, when traced."""
    if _ACTIVE.get() is not None:
        PROPAGATOR.inject(headers)


def untraced() -> None:
    """In a long-lived task a request happened to start (an upstream link started on first use):
    forget that request's span, so the task's own traffic is not made part of its trace."""
    if _ACTIVE.get() is not None:
        otel_context.attach(otel_context.Context())
        _ACTIVE.set(None)


async def inject_request(request: Any) -> None:
    """An `httpx2` request event hook: `inject` into the request's headers."""
    if _ACTIVE.get() is not None:
        PROPAGATOR.inject(request.headers)
