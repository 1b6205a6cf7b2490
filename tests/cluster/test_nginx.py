"""deploy/nginx.conf, run by a real nginx in front of two gateway hosts: it spreads requests
over both, streams SSE as it is written, and keeps answering when one host goes away."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import httpx2

from tests.cluster.conftest import children_of
from tests.cluster.test_workers import call, health
from tests.conftest import wait_until


def _hosts(serve, servers_dir, redis_server) -> list[Any]:
    """Two hosts, as in deploy/README.md: each `serve --workers 2`, on ports of their own."""
    return [serve(servers_dir, workers=2, env={"MCP_REDIS_URL": redis_server.url}) for _ in range(2)]


def _host_of(pid: int, hosts: list[Any]) -> int:
    """Which of `hosts` runs the worker `pid`."""
    return next(index for index, host in enumerate(hosts) if pid in children_of(host.proc.pid))


def test_nginx_spreads_health_and_stateless_calls_over_both_hosts(serve, nginx, servers_dir, redis_server):
    hosts = _hosts(serve, servers_dir, redis_server)
    proxy = nginx([host.port for host in hosts])

    answered: set[int] = set()

    def both_hosts_answered_health() -> bool:
        answered.add(_host_of(health(proxy.base_url)["worker"]["pid"], hosts))
        return answered == {0, 1}

    wait_until(both_hosts_answered_health, message=lambda: f"only host {answered} answered")

    upstreams: set[str] = set()

    def both_hosts_answered_calls() -> bool:
        answer = httpx2.post(**call(proxy.base_url, "echo", {"message": "through nginx"}))
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"]["content"][0]["text"] == "through nginx"
        upstreams.add(answer.headers["X-Upstream"])
        return len(upstreams) == 2

    wait_until(both_hosts_answered_calls, message=lambda: f"only {upstreams} answered")
    assert upstreams == {f"127.0.0.1:{host.port}" for host in hosts}


def test_progress_streams_through_nginx_as_it_happens(serve, nginx, servers_dir, redis_server):
    hosts = _hosts(serve, servers_dir, redis_server)
    proxy = nginx([host.port for host in hosts])
    arrived: list[tuple[float, dict[str, Any]]] = []
    began = time.monotonic()
    with httpx2.stream("POST", **call(proxy.base_url, "slow", {"steps": 4, "delay": 0.5}, progress="p")) as answer:
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "text/event-stream"
        for line in answer.iter_lines():
            if line.startswith("data:"):
                arrived.append((time.monotonic() - began, json.loads(line[5:])))
    kinds = [message.get("method", "result" if "result" in message else "?") for _, message in arrived]
    assert kinds == ["notifications/progress"] * 4 + ["result"]
    assert arrived[-1][1]["result"]["content"][0]["text"] == "done 4 steps"
    first, last = arrived[0][0], arrived[-1][0]
    # The steps are 0.5 s apart: held back in a buffer, all five would come together at the end.
    assert last - first > 1.5, f"the events arrived together: {[round(t, 2) for t, _ in arrived]}"


def test_nginx_keeps_answering_when_a_host_goes_away(serve, nginx, servers_dir, redis_server):
    hosts = _hosts(serve, servers_dir, redis_server)
    proxy = nginx([host.port for host in hosts])
    hosts[0].proc.send_signal(signal.SIGTERM)
    assert hosts[0].wait_exit(15) == 0
    for _ in range(10):
        worker = health(proxy.base_url)["worker"]
        assert _host_of(worker["pid"], hosts) == 1
