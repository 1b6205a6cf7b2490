"""`StderrTail`: the last lines a child wrote to stderr, bounded in lines and in bytes.

What a crashed child said last is usually why it crashed; the admin views (`GET /servers/{name}`,
the console) show it beside the supervisor's `last_error`. A child can write without end, so only
the newest `max_lines` lines are kept, each cut to `max_line_bytes`, and the oldest go first
while the whole is over `max_bytes`.
"""

from __future__ import annotations

import collections

MAX_LINES = 20
MAX_BYTES = 4096
MAX_LINE_BYTES = 1024


class StderrTail:
    def __init__(
        self, *, max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES, max_line_bytes: int = MAX_LINE_BYTES
    ) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._max_bytes = max_bytes
        self._max_line_bytes = max_line_bytes
        self._bytes = 0

    def add(self, raw: bytes) -> str:
        """Keep one line (undecodable bytes replaced, cut to `max_line_bytes`); returns it as kept."""
        cut = raw[: self._max_line_bytes] if len(raw) > self._max_line_bytes else raw
        line = cut.decode(errors="replace").rstrip()
        if len(raw) > self._max_line_bytes:
            line += " [cut]"
        if len(self._lines) == self._lines.maxlen:
            self._bytes -= len(self._lines[0].encode())
        self._lines.append(line)
        self._bytes += len(line.encode())
        while self._bytes > self._max_bytes and len(self._lines) > 1:
            self._bytes -= len(self._lines.popleft().encode())
        return line

    def lines(self) -> list[str]:
        return list(self._lines)
