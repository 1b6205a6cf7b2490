"""`RateLimitFilter`: the same log line, repeated, is let through a few times per window, then counted.

Clients can make the gateway log at will (every 4xx is an access-log warning, every 500 an
error with a traceback), so without a limit a flood of bad requests becomes a flood of log
lines and, at last, a full disk. Lines are told apart by logger, level and the record's `msg`
template (not the formatted text), so "401 POST /a/mcp" and "401 POST /b/mcp" are the same line.

Records below WARNING pass untouched, except the access log's (a client drives every one of
those). Per key and window, `burst` records pass (`error_burst` at ERROR and above: rarer and more
telling, but a 500 storm must not fill a disk either); the last one that passes says that more
are being suppressed, and the first one after the window says how many were.
"""

from __future__ import annotations

import dataclasses
import logging
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
