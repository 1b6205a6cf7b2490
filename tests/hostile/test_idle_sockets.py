"""Item 3: idle, half-sent and slow connections cannot exhaust descriptors or stop `/health`.

Before: such connections stayed open for an hour, and with a low descriptor limit a few
hundred stopped `/health` while the accept loop logged ~70,000 `Too many open files`
tracebacks. Now headers and bodies have deadlines, the number of connections is capped below
the descriptor limit, and at the cap the longest-idle connection makes room for a new one.
"""

from __future__ import annotations

import socket
import time

import httpx2

from tests.conftest import wait_until

MAX_FDS = 256  # the gateway's RLIMIT_NOFILE: its connection cap becomes 192
ATTACKERS = 400
LOG_CEILING = 32 * 1024
HALF_HEADER = b"POST /everything/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
SLOW_BODY = b"POST /everything/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n{"


def _attack(port: int, count: int) -> list[socket.socket]:
    """Connections that send nothing, half a header, or the start of a body, then wait."""
    sockets = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall([b"", HALF_HEADER, SLOW_BODY][i % 3])
        sockets.append(sock)
    return sockets


def _health_within_a_second(base_url: str) -> bool:
    with httpx2.Client(timeout=1) as http:
        return http.get(f"{base_url}/health").status_code == 200


def test_idle_connections_cannot_starve_health(spawn_gateway, servers_dir):
    gateway = spawn_gateway(servers_dir, max_fds=MAX_FDS)
    baseline = gateway.fds()
    log_before = gateway.log_bytes()
    sockets = _attack(gateway.port, ATTACKERS)
    try:
        for _ in range(5):
            assert _health_within_a_second(gateway.base_url)
        assert gateway.fds() <= MAX_FDS
    finally:
        for sock in sockets:
            sock.close()
    wait_until(lambda: gateway.fds() <= baseline + 2, message="descriptors not given back")
    log = gateway.log_text()
    assert "Too many open files" not in log and "Traceback" not in log, log[-2000:]
    assert gateway.log_bytes() - log_before < LOG_CEILING


def test_out_of_descriptors_pauses_accepting_quietly(spawn_gateway, servers_dir):
    # A cap above what the descriptor limit allows: accept() itself runs out (EMFILE).
    gateway = spawn_gateway(servers_dir, max_fds=64, env={"MCP_MAX_CONNECTIONS": "1000"})
    baseline = gateway.fds()
    sockets = _attack(gateway.port, 100)  # past the limit, and within the listen backlog of 128
    try:
        wait_until(lambda: gateway.fds() >= 60, message="the gateway never ran out of descriptors")
        for _ in range(20):  # each one makes the exhausted accept loop fail again: the log must stay quiet
            sockets.append(socket.create_connection(("127.0.0.1", gateway.port)))
    finally:
        for sock in sockets:
            sock.close()
    wait_until(lambda: gateway.fds() <= baseline + 2, message="descriptors not given back")
    wait_until(lambda: _health_within_a_second(gateway.base_url), message="no service after the attack")
    log = gateway.log_text()
    assert "Traceback" not in log, log[-2000:]
    assert log.count("out of descriptors") < 5, "one warning per exhaustion, not per failed accept"


def test_headers_and_bodies_have_deadlines(spawn_gateway, servers_dir):
    gateway = spawn_gateway(servers_dir, env={"MCP_HEADER_TIMEOUT": "1", "MCP_BODY_TIMEOUT": "1"})
    for opening in (b"", HALF_HEADER, SLOW_BODY):
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
            sock.sendall(opening)
            began = time.monotonic()
            while sock.recv(4096):  # whatever it answers, the server closes the connection
                pass
            assert time.monotonic() - began < 5, opening
