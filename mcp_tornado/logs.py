"""The gateway's log: repeated lines rate-limited, request ids, and one JSON object a line if asked.

`RateLimitFilter`: the same log line, repeated, is let through a few times per window, then counted.

Clients can make the gateway log at will (every 4xx is an access-log warning, every 500 an
error with a traceback), so without a limit a flood of bad requests becomes a flood of log
lines and, at last, a full disk. Lines are told apart by logger, level and the record's `msg`
template (not the formatted text), so "401 POST /a/mcp" and "401 POST /b/mcp" are the same line.

Records below WARNING pass untouched, except the access log's (a client drives every one of
those). Per key and window, `burst` records pass (`error_burst` at ERROR and above: rarer and more
telling, but a 500 storm must not fill a disk either); the last one that passes says that more
are being suppressed, and the first one after the window says how many were.

`request_id(incoming)`: a request's id, the client's `X-Request-Id` when it is sane, else a new
one. `JsonFormatter`: `--log-format json` (`MCP_LOG_FORMAT=json`), one object a line with time,
level, logger and message, and the request's id, server, method, status and duration when the
line is about a request (the access log's `extra`). `configure(format)` sets the root logger up.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Hashable

# Long enough to flatten a flood, short enough that a new problem shows within seconds.
WINDOW_SECONDS = 10.0
# Records per key and window below ERROR: enough to see a problem's shape, not its every instance.
BURST = 20
# Records per key and window at ERROR and above (each may carry a traceback of a few KB).
ERROR_BURST = 50
# Keys remembered at once: templates are few, but one built with an f-string is unbounded.
MAX_KEYS = 4096
# Loggers whose every line a client can cause, whatever its level: limited below WARNING too.
CLIENT_DRIVEN = frozenset({"tornado.access"})
# The attribute that remembers, on a record, this filter's decision: one filter on several
# handlers (the root's) sees each record once per handler and must count it once.
_DECISION = "_rate_limit_decision"


@dataclasses.dataclass
class _Window:
    start: float
    passed: int = 0
    suppressed: int = 0


class RateLimitFilter(logging.Filter):
    """A `logging.Filter` that lets `burst` similar records through per `window` seconds.

    `clock` returns seconds (monotonic); tests pass their own. Safe to call from any thread.
    A record that passes after a suppressed spell carries the count in its message; a record
    whose window passes without another similar one keeps its count to itself.
    """

    def __init__(
        self,
        *,
        burst: int = BURST,
        error_burst: int = ERROR_BURST,
        window: float = WINDOW_SECONDS,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.error_burst = error_burst
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._windows: dict[Hashable, _Window] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and record.name not in CLIENT_DRIVEN:
            return True  # our own information (a server loaded, a child started) is never thinned
        decided = record.__dict__.get(_DECISION)
        if decided is not None and decided[0] is self:
            return bool(decided[1])
        key = (record.name, record.levelno, record.msg if isinstance(record.msg, str) else repr(record.msg))
        allowance = self.error_burst if record.levelno >= logging.ERROR else self.burst
        with self._lock:
            now = self._clock()
            window = self._windows.get(key)
            suppressed_before = 0
            if window is None or now - window.start >= self.window:
                suppressed_before = window.suppressed if window is not None else 0
                self._windows.pop(key, None)  # re-inserted last: the dict stays ordered by window start
                if len(self._windows) >= self.max_keys:
                    del self._windows[next(iter(self._windows))]
                window = self._windows[key] = _Window(start=now)
            passed = window.passed < allowance
            if passed:
                window.passed += 1
            else:
                window.suppressed += 1
            last = window.passed == allowance and passed
        if passed and (suppressed_before or last):
            notes = [f"{suppressed_before} similar lines suppressed before this one"] if suppressed_before else []
            if last:
                notes.append(f"{allowance} similar lines in {self.window:g} s: more are suppressed, and counted")
            # msg is a %-template: the note carries no % of its own, so formatting is unchanged.
            record.msg = f"{record.msg} [{'; '.join(notes)}]"
        record.__dict__[_DECISION] = (self, passed)
        return passed


def install(target: logging.Handler | logging.Logger, limiter: RateLimitFilter | None = None) -> RateLimitFilter:
    """Add `limiter` (a default `RateLimitFilter`) to a handler, or to every handler of a logger.

    Returns the filter. A logger's own filters see only records logged on it, not those that
    propagate up to it, so for the root logger the filter goes on its handlers, where every
    record arrives; add handlers before calling this.
    """
    limiter = limiter if limiter is not None else RateLimitFilter()
    handlers = target.handlers if isinstance(target, logging.Logger) else [target]
    for handler in handlers:
        handler.addFilter(limiter)
    return limiter


# A client's X-Request-Id is echoed and logged only when it is short and plain (a UUID, hex,
# base64, `svc:1234`): nothing that could forge a log line or carry a payload.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{0,127}")
REQUEST_ID_HEADER = "X-Request-Id"


class _Ids:
    """Our request ids: 8 random hex digits per process (new in a forked worker), then a counter."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(4).hex()
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):08x}"


_ids = _Ids()


def request_id(incoming: str | None) -> str:
    """The id a request is logged and answered with: `incoming` when sane, else one of ours
    (16 hex digits or more, unique across processes; no random bytes drawn per request)."""
    if incoming is not None and SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return _ids.next()


# What the access log hands a line beside its message (`extra=`): JSON fields, in this order.
REQUEST_FIELDS = ("request_id", "server", "method", "rpc_method", "status", "duration_ms", "remote_ip")


ACCESS_LOG = logging.getLogger("tornado.access")


@dataclasses.dataclass(frozen=True, slots=True)
class AccessLine:
    """One access-log line: what a request was, and how it ended."""

    status: int
    method: str | None
    uri: str
    remote_ip: str | None
    duration_ms: float
    request_id: str | None = None
    server: str | None = None
    rpc_method: str | None = None

    def log(self, level: int) -> None:
        extra = {
            "request_id": self.request_id,
            "server": self.server,
            "method": self.method,
            "rpc_method": self.rpc_method,
            "status": self.status,
            "duration_ms": round(self.duration_ms, 3),
            "remote_ip": self.remote_ip,
        }
        ACCESS_LOG.log(
            level,
            "%d %s %s%s (%s) %.2fms id=%s",
            self.status,
            self.method,
            self.uri,
            f" {self.rpc_method}" if self.rpc_method and not self.rpc_method.startswith("(") else "",
            self.remote_ip,
            self.duration_ms,
            self.request_id,
            extra=extra,
        )


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the request's fields
    when the line is about one, and the exception's traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for name in REQUEST_FIELDS:
            value = fields.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    """The process's logging: the root logger at `level` on stderr, in `log_format`, rate-limited."""
    logging.basicConfig(level=level, format=TEXT_FORMAT)
    root = logging.getLogger()
    if log_format == "json":
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
    install(root)  # clients can make us log at will: repeated lines are rate-limited
