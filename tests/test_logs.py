"""The gateway's log: `RateLimitFilter` on a real logger (a flood of one line becomes a few lines
and a count), and a real `mcp-tornado serve` logging one line a request with its id, as text or
as JSON (`--log-format json`, `MCP_LOG_FORMAT=json`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from mcp_tornado import logs
from tests.conftest import SECRET, eventually, token
from tests.e2e.wire import headers, init_body, open_session, stream_headers


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def handler() -> ListHandler:
    return ListHandler()


@pytest.fixture
def logger(handler: ListHandler, clock: Clock) -> Iterator[logging.Logger]:
    log = logging.getLogger("tests.logs.flood")
    log.propagate = False  # the lines under test stay out of pytest's own capture
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    logs.install(handler, logs.RateLimitFilter(burst=3, error_burst=5, window=10, clock=clock))
    yield log
    log.removeHandler(handler)
    log.propagate = True


def test_a_burst_passes_then_the_rest_is_suppressed(logger, handler):
    for i in range(100):
        logger.warning("401 POST /x/mcp %d", i)
    assert handler.lines[:2] == ["401 POST /x/mcp 0", "401 POST /x/mcp 1"]
    assert len(handler.lines) == 3
    assert handler.lines[2].startswith("401 POST /x/mcp 2 [3 similar lines in 10 s: more are suppressed")


def test_the_next_window_says_how_many_were_suppressed(logger, handler, clock):
    for i in range(50):
        logger.warning("bad %d", i)
    clock.now += 9.9
    logger.warning("bad %d", 50)
    assert len(handler.lines) == 3  # still the first window
    clock.now += 0.1
    logger.warning("bad %d", 51)
    assert handler.lines[3] == "bad 51 [48 similar lines suppressed before this one]"
    logger.warning("bad %d", 52)
    assert handler.lines[4] == "bad 52"  # the count is told once


def test_the_key_is_the_template_not_the_text(logger, handler):
    for i in range(10):
        logger.warning(f"formatted {i}")  # noqa: G004 - distinct templates on purpose
        logger.warning("templated %d", i)
    assert sum(line.startswith("formatted") for line in handler.lines) == 10
    assert sum(line.startswith("templated") for line in handler.lines) == 3


def test_loggers_and_levels_are_limited_apart(logger, handler):
    other = logging.getLogger("tests.logs.flood.other")
    for _ in range(10):
        logger.error("same")
        logger.warning("same")
        other.warning("same")  # propagates to the same handler, under its own name
    assert len(handler.lines) == 5 + 3 + 3  # errors under error_burst, each warning key under burst


def test_information_passes_unless_a_client_drives_it(logger, handler):
    access = logging.getLogger("tornado.access")
    access.addHandler(handler)
    level, access.level = access.level, logging.INFO
    try:
        for _ in range(10):
            logger.info("a server loaded")  # our own news: never thinned
            access.info("200 GET /health")  # a client can send these at will
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    assert handler.lines.count("a server loaded") == 10
    assert len([line for line in handler.lines if "GET /health" in line]) == 3


def test_errors_have_a_higher_allowance_but_a_limit_too(logger, handler):
    for _ in range(1000):
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("request failed")
    assert len(handler.lines) == 5  # error_burst, tracebacks included


def test_a_record_seen_by_several_handlers_is_counted_once(handler, clock):
    root_like = logging.getLogger("tests.logs.two-handlers")
    root_like.propagate = False
    second = ListHandler()
    root_like.addHandler(handler)
    root_like.addHandler(second)
    logs.install(root_like, logs.RateLimitFilter(burst=4, clock=clock))
    try:
        for i in range(10):
            root_like.warning("twice %d", i)
    finally:
        root_like.removeHandler(handler)
        root_like.removeHandler(second)
    assert len(handler.lines) == len(second.lines) == 4
    assert handler.lines == second.lines


def test_percent_signs_and_odd_messages_still_format(logger, handler, clock):
    for _ in range(5):
        logger.warning("100%% of %s", "requests")
        logger.warning({"not": "a string"})
    clock.now += 60
    logger.warning("100%% of %s", "requests")
    percent = [line for line in handler.lines if line.startswith("100%")]
    assert percent == [
        "100% of requests",
        "100% of requests",
        "100% of requests [3 similar lines in 10 s: more are suppressed, and counted]",
        "100% of requests [2 similar lines suppressed before this one]",
    ]
    assert handler.lines.count("{'not': 'a string'}") == 2


def test_the_table_of_keys_is_bounded(handler, clock):
    log = logging.getLogger("tests.logs.many-keys")
    log.propagate = False
    log.addHandler(handler)
    limiter = logs.install(handler, logs.RateLimitFilter(max_keys=8, clock=clock))
    try:
        for i in range(100):
            log.warning(f"distinct {i}")  # noqa: G004 - every line its own key
    finally:
        log.removeHandler(handler)
    assert len(limiter._windows) <= 8
    assert len(handler.lines) == 100


def test_threads_share_one_allowance(handler):
    log = logging.getLogger("tests.logs.threads")
    log.propagate = False
    log.addHandler(handler)
    limiter = logs.install(handler, logs.RateLimitFilter(burst=50))
    start = threading.Barrier(8)

    def flood() -> None:
        start.wait()
        for _ in range(2000):
            log.warning("from a worker thread")

    workers = [threading.Thread(target=flood) for _ in range(8)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        log.removeHandler(handler)
    assert len(handler.lines) == 50
    window = next(iter(limiter._windows.values()))
    assert window.passed + window.suppressed == 8 * 2000


# -- one line a request, with its id; `--log-format json` ---------------------------------------


@contextlib.contextmanager
def gateway_process(servers_dir: Path, *flags: str, environ: dict[str, str] | None = None) -> Iterator[Any]:
    """`mcp-tornado serve` as a child process; yields (base URL, a function returning its stderr once stopped)."""
    env = {**os.environ, "JWT_SECRET": SECRET, "MCP_LOG_FORMAT": "", **(environ or {})}
    command = [sys.executable, "-m", "mcp_tornado", "serve", "--port", "0", "--servers-dir", str(servers_dir), *flags]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        announced = proc.stdout.readline()  # "mcp-tornado 0.1.0 on http://127.0.0.1:PORT", or "" if it died
        assert " on http://" in announced, proc.communicate(timeout=30)
        base_url = announced.rsplit(" ", 1)[1].strip()

        def stderr() -> list[str]:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            return err.splitlines()

        yield base_url, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("how", [("--log-format", "json"), ("MCP_LOG_FORMAT=json",)])
def test_json_logs_are_one_object_a_line_with_the_request_id_the_response_carries(servers_dir, how):
    flags, environ = (how, {}) if how[0].startswith("--") else ((), dict([how[0].split("=")]))
    with gateway_process(servers_dir, *flags, environ=environ) as (base_url, stop):
        with httpx2.Client() as http:
            health = http.get(f"{base_url}/health", headers={"X-Request-Id": "req-7f3a:42"})
            refused = http.post(f"{base_url}/everything/mcp", json=init_body(), headers=headers())
            forged = http.get(f"{base_url}/health", headers={"X-Request-Id": "evil\tid with spaces"})
        lines = stop()
    assert health.headers["X-Request-Id"] == "req-7f3a:42"  # a sane id is the client's own
    assert refused.status_code == 401 and len(refused.headers["X-Request-Id"]) == 16  # none sent: ours
    assert "evil" not in forged.headers["X-Request-Id"]  # one that is not sane is replaced
    records = [json.loads(line) for line in lines if line.strip()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    by_id = {record.get("request_id"): record for record in records if record["logger"] == "tornado.access"}
    assert by_id["req-7f3a:42"]["level"] == "INFO"
    assert by_id["req-7f3a:42"]["method"] == "GET" and by_id["req-7f3a:42"]["status"] == 200
    assert by_id["req-7f3a:42"]["duration_ms"] >= 0
    mcp = by_id[refused.headers["X-Request-Id"]]
    assert (mcp["level"], mcp["server"], mcp["rpc_method"], mcp["status"]) == (
        "WARNING",
        "everything",
        "initialize",
        401,
    )
    assert forged.headers["X-Request-Id"] in by_id
    assert any(record["message"].startswith("everything: serving") for record in records)


def test_text_logs_carry_the_request_id_too(servers_dir):
    with gateway_process(servers_dir) as (base_url, stop):
        refused = httpx2.post(f"{base_url}/everything/mcp", json=init_body(), headers=headers())
        odd = httpx2.request("PROPFIND", f"{base_url}/everything/mcp")  # refused by Tornado before routing
        lines = stop()
    assert odd.status_code == 405
    propfind = [line for line in lines if " 405 PROPFIND /everything/mcp (127.0.0.1) " in line]
    assert len(propfind) == 1 and propfind[0].endswith(f"id={odd.headers['X-Request-Id']}"), lines
    access = [line for line in lines if "tornado.access" in line and "POST /everything/mcp" in line]
    assert len(access) == 1 and access[0].endswith(f"id={refused.headers['X-Request-Id']}"), access
    assert " WARNING tornado.access: 401 POST /everything/mcp initialize (127.0.0.1) " in access[0]


@pytest.mark.gen_test(timeout=30)
async def test_a_get_stream_is_logged_at_debug_when_it_ends_with_its_whole_life(base_url, caplog):
    # The stream outlives its handler (its response holds the connection); its line comes at its end.
    url = f"{base_url}/everything/mcp"
    caplog.set_level(logging.DEBUG, logger="tornado.access")
    async with httpx2.AsyncClient(timeout=10) as http:
        session = await open_session(http, url, token())
        get = {**stream_headers(session), "Authorization": f"Bearer {token()}"}
        get["X-Request-Id"] = "stream-1"
        async with http.stream("GET", url, headers=get) as response:
            assert response.status_code == 200
            await asyncio.sleep(0.3)  # the stream's life, which the line must report
            assert not [r for r in caplog.records if getattr(r, "request_id", None) == "stream-1"]

    async def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if getattr(r, "request_id", None) == "stream-1"]

    (record,) = await eventually(logged, message="the ended GET stream was never logged")
    assert record.levelno == logging.DEBUG
    assert record.getMessage().startswith("200 GET /everything/mcp (127.0.0.1) ")
    fields = {name: getattr(record, name) for name in ("server", "method", "rpc_method", "status")}
    assert fields == {"server": "everything", "method": "GET", "rpc_method": "(stream)", "status": 200}
    assert record.duration_ms >= 300  # type: ignore[attr-defined]
