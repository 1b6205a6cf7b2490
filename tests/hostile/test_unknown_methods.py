"""Item 4: a request with a method nobody serves is a 405 and one short log line, no traceback."""

from __future__ import annotations

import socket

UNKNOWN = b"X /everything/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
REPEATS = 2_000
# 38 bytes in used to cost ~1 KB of traceback each (2 MB here); now a few rate-limited lines.
LOG_CEILING = 64 * 1024


def test_unknown_methods_are_405_without_a_traceback(spawn_gateway, servers_dir):
    gateway = spawn_gateway(servers_dir)
    before = gateway.log_bytes()
    for _ in range(REPEATS):  # Tornado closes the connection after a bodiless request of an unknown method
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
            sock.sendall(UNKNOWN)
            assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 405")
    grown = gateway.log_bytes() - before
    log = gateway.log_text()
    assert "Traceback" not in log and "AttributeError" not in log, log[-2000:]
    assert grown < LOG_CEILING, f"the log grew {grown} bytes for {REPEATS} requests"
