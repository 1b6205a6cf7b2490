"""mcp-tornado's benchmark: one run, every peer side by side, one table of ratios (issue [8], "speed per core").

Run from the repository root (`make bench` does, after installing wrk's and node's pieces):

    .venv/bin/python bench/bench.py                # the full run, about 4-5 minutes; appends to bench/RESULTS.md
    .venv/bin/python bench/bench.py --smoke        # CI: every scenario at toy size, ~3 s of load, no verdicts
    .venv/bin/python bench/bench.py --only tools_call --profile 10   # py-spy profile of the gateway under wrk

Servers run pinned to one CPU and the load (wrk, this process) to another, when `taskset` exists and
there are 2 CPUs or more. Every answer is checked: a wrong one, or a peer that does not start, stops
the run with exit status 1. Each scenario prints what it measured, its target and whether it is met.
See bench/README.md for what each scenario does and measures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import os
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from harness import (
    BASE_HEADERS,
    MODERN,
    NODE_MODULES,
    PEERS,
    PYTHON,
    ROOT,
    BenchError,
    HTTPConn,
    Pinning,
    Proc,
    WrkRun,
    answer_of,
    call_script,
    cpu_busy,
    free_port,
    open_session,
    run_wrk,
    sessions_script,
    spawn,
    sse_payloads,
    token,
    wait_until_up,
)

RESULTS = ROOT / "bench" / "RESULTS.md"
SCENARIOS = ("tools_call", "sse", "stateless", "churn", "proxied", "idle", "reaping", "shared")

CALL = '{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}'
PROGRESS_CALL = (
    '{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{"name":"add_progress",'
    '"arguments":{"a":1,"b":2},"_meta":{"progressToken":{id}}}}'
)
ENVELOPE = (
    '"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
    '"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"wrk","version":"0"}}'
)
STATELESS_CALL = (
    '{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2},'
    + ENVELOPE
    + "}}"
)
STATELESS_HEADERS = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "add"}

ADD_SCHEMA = "{type: object, properties: {a: {type: number}, b: {type: number}}, required: [a, b]}"
BENCH_YAML = f"""\
name: bench
tools:
  - name: add
    description: add two numbers
    inputSchema: {ADD_SCHEMA}
    handler: gateway_tools:add
  - name: add_progress
    description: add two numbers, reporting progress once
    inputSchema: {ADD_SCHEMA}
    handler: gateway_tools:add_progress
"""
FANOUT_YAML = """\
name: fanout
tools:
  - name: add
    description: {description}
    inputSchema: {schema}
    handler: gateway_tools:add
"""


# -- what a scenario reports -----------------------------------------------------------------------


@dataclass
class Verdict:
    scenario: str
    measured: str
    target: str
    met: bool | None  # None: not judged (smoke, or not measured)
    note: str = ""

    def status(self) -> str:
        return "-" if self.met is None else ("met" if self.met else "not met")


@dataclass
class Peer:
    """One server under one scenario: where to POST, with which headers, and the answer to expect."""

    label: str
    proc: Proc
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = CALL
    expect_text: str | None = None  # the tool's text result, learnt from the first checked answer
    content_type: str = "application/json"
    must_contain: tuple[str, ...] = ('"result"',)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proc.port}{self.path}"


@dataclass
class Rounds:
    runs: list[WrkRun]

    @property
    def median(self) -> WrkRun:
        return sorted(self.runs, key=lambda r: r.rate)[len(self.runs) // 2]


def fmt_rate(rate: float) -> str:
    return f"{rate:,.0f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


# -- the run ---------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.smoke: bool = args.smoke
        self.pinning = Pinning.detect(not args.no_pin)
        self.has_wrk = shutil.which("wrk") is not None
        self.has_node = shutil.which("node") is not None and (NODE_MODULES / "@modelcontextprotocol" / "sdk").is_dir()
        self.tmp = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
        self.secret = "bench-" + os.urandom(24).hex()
        self.procs: list[Proc] = []
        self.verdicts: list[Verdict] = []
        self.sections: list[str] = []  # markdown, in order, for the screen and RESULTS.md
        self.notes: list[str] = []
        self.churn_rate: float | None = None
        self.busy_before: dict[int, float] = {}
        self.reap_rss_kb = 0
        self.source, self.revision = self.gateway_source(args.gateway_rev)

    def gateway_source(self, rev: str | None) -> tuple[Path, str]:
        """Where the gateway runs from: this working tree, or `rev` exported with `git archive`."""
        if rev is None:
            described = subprocess.run(
                ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, check=False
            ).stdout.strip()
            return ROOT, f"the working tree ({described or 'no git'})"
        commit = subprocess.run(
            ["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        source = self.tmp / "gateway-src"
        source.mkdir()
        archive = subprocess.Popen(["git", "archive", commit], cwd=ROOT, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(source)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise BenchError(f"git archive {rev} failed")
        return source, f"commit {commit} ({rev}, exported with git archive)"

    # -- processes ---------------------------------------------------------------------------------

    def start(
        self, name: str, cmd: list[str], env: dict[str, str] | None = None, port: int = 0, cwd: Path = ROOT
    ) -> Proc:
        proc = spawn(name, self.pinning.server(cmd), self.tmp, {**os.environ, **(env or {})}, port, cwd)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def servers_dir(self, name: str, files: dict[str, str]) -> Path:
        directory = self.tmp / name
        directory.mkdir()
        shutil.copy(PEERS / "gateway_tools.py", directory / "gateway_tools.py")
        for file_name, text in files.items():
            (directory / file_name).write_text(text)
        return directory

    def gateway(self, name: str, directory: Path, env: dict[str, str] | None = None) -> Proc:
        port = free_port()
        cmd = [PYTHON, "-m", "mcp_tornado", "serve", "--host", "127.0.0.1", "--port", str(port)]
        settings = {"JWT_SECRET": self.secret, "MCP_SHUTDOWN_GRACE": "1", **(env or {})}
        return self.start(name, [*cmd, "--servers-dir", str(directory)], settings, port, self.source)

    def auth(self, server: str, ttl: float = 3600) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(self.secret, server, ttl)}"}

    def start_peers(self) -> None:
        """The peers of the throughput scenarios, side by side: gateway, SDK modes, floor, Node, upstream."""
        only = set(self.args.only)
        g1 = {"bench.yaml": BENCH_YAML}
        if "proxied" in only:
            port = free_port()
            self.upstream = self.start(
                "upstream-http", [PYTHON, str(PEERS / "upstream.py"), "http", str(port)], port=port
            )
            g1["stdio_up.yaml"] = (
                f"command: {json.dumps([PYTHON, str(PEERS / 'upstream.py'), 'stdio'])}\nstart: eager\n"
            )
            g1["url_up.yaml"] = f"url: http://127.0.0.1:{self.upstream.port}/mcp\n"
        self.g1 = self.gateway("mcp-tornado", self.servers_dir("g1", g1))
        self.sdk: dict[str, Proc] = {}
        modes = {"json": "tools_call", "sse": "sse", "stateless-auth": "stateless", "stateless": "stateless"}
        for mode, scenario in modes.items():
            if scenario in only:
                port = free_port()
                env = {"BENCH_JWT_SECRET": self.secret}
                cmd = [PYTHON, str(PEERS / "sdk_server.py"), str(port), mode]
                self.sdk[mode] = self.start(f"sdk-{mode}", cmd, env, port)
        self.floor = self.node = None
        if "tools_call" in only:
            port = free_port()
            self.floor = self.start("floor", [PYTHON, str(PEERS / "floor.py"), str(port)], port=port)
            if self.has_node:
                port = free_port()
                env = {"BENCH_NODE_MODULES": str(NODE_MODULES)}
                self.node = self.start(
                    "node-express-sdk", ["node", str(PEERS / "node_server.mjs"), str(port)], env, port
                )
        for proc in list(self.procs):
            wait_until_up(proc, "/health" if proc is self.g1 else "/mcp")
        if "proxied" in only:
            asyncio.run(self.wait_for_backends(self.g1, ("stdio_up", "url_up")))

    async def wait_for_backends(self, gateway: Proc, names: tuple[str, ...], timeout: float = 30) -> None:
        conn = await HTTPConn.open(gateway.port)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                servers = (await conn.request("GET", "/health", {})).json()["servers"]
                if all(servers.get(n, {}).get("state") == "running" for n in names):
                    return
                await asyncio.sleep(0.1)
            raise BenchError(f"backends {names} not running after {timeout:.0f} s: {servers}\n{gateway.tail()}")
        finally:
            conn.close()

    # -- checking answers with the Python client, then load with wrk --------------------------------

    async def prepare(self, peer: Peer, session: bool, calls: int = 3) -> None:
        """Open a session when the peer needs one; send `calls` requests exactly as wrk will, check each
        answer completely (status, content type, the tool's result, progress when asked), and learn the
        result text the wrk hook then looks for in every answer."""
        conn = await HTTPConn.open(peer.proc.port)
        try:
            if session:
                peer.headers = {**peer.headers, **await open_session(conn, peer.path, peer.headers)}
            for i in range(1, calls + 1):
                request_id = 900_000 + i
                response = await conn.request(
                    "POST",
                    peer.path,
                    {**BASE_HEADERS, **peer.headers},
                    peer.body.replace("{id}", str(request_id)).encode(),
                )
                answer = answer_of(response, request_id)
                result = answer.get("result") or {}
                text = (result.get("content") or [{}])[0].get("text")
                if result.get("isError") or text is None or float(text) != 3:
                    raise BenchError(f"{peer.label}: bad answer to add(1, 2): {answer}")
                if not response.headers.get("content-type", "").startswith(peer.content_type):
                    raise BenchError(f"{peer.label}: expected {peer.content_type}, got {response.headers}")
                if "progressToken" in peer.body:
                    progress = [
                        p
                        for p in sse_payloads(response.body)
                        if p.get("method") == "notifications/progress" and p["params"]["progressToken"] == request_id
                    ]
                    if not progress:
                        raise BenchError(f"{peer.label}: no progress notification in {response.body[:300]!r}")
                peer.expect_text = text
        finally:
            conn.close()
        peer.must_contain = (*peer.must_contain, json.dumps(peer.expect_text))
        if peer.content_type == "text/event-stream":
            peer.must_contain = (*peer.must_contain, "notifications/progress")

    def wrk(self, peer: Peer, seconds: int, connections: int) -> WrkRun:
        script = self.tmp / f"{peer.label.replace(' ', '_').replace('/', '_')}.lua"
        if not script.exists():
            headers = {**BASE_HEADERS, **peer.headers}
            script.write_text(call_script(headers, peer.body, peer.must_contain, peer.content_type))
        run = run_wrk(peer.label, peer.url, script, self.pinning, connections=connections, seconds=seconds)
        peer.proc.check_alive()
        return run

    def load(self, peers: list[Peer], seconds: int, rounds: int, label: str) -> dict[str, Rounds] | None:
        """Warm-up, then `rounds` interleaved wrk runs per peer. Smoke: one 1-second run on the first peer."""
        connections = self.args.connections
        if not self.has_wrk:
            self.notes.append(f"{label}: wrk not found, answers checked but nothing timed")
            return None
        if self.smoke:  # one second of wrk proves the wrk side; the other scenarios' answers are checked above
            if label != "tools_call":
                return None
            run_wrk_once = self.wrk(peers[0], 1, min(connections, 4))
            print(f"  {peers[0].label}: {run_wrk_once.requests} requests under wrk, every answer checked", flush=True)
            return None
        for peer in peers:
            self.wrk(peer, self.args.warmup, connections)
        results: dict[str, Rounds] = {p.label: Rounds([]) for p in peers}
        for round_no in range(1, rounds + 1):
            for peer in peers:
                run = self.wrk(peer, seconds, connections)
                results[peer.label].runs.append(run)
                print(
                    f"  round {round_no}: {peer.label}: {fmt_rate(run.rate)} req/s, p99 {run.p99_ms:.1f} ms", flush=True
                )
        return results

    @staticmethod
    def rows(results: dict[str, Rounds], peers: list[Peer]) -> list[str]:
        lines = ["| server | rps | p99 | rounds (rps) |", "| --- | ---: | ---: | --- |"]
        for peer in peers:
            r = results[peer.label]
            rounds = ", ".join(fmt_rate(x.rate) for x in r.runs)
            lines.append(f"| {peer.label} | {fmt_rate(r.median.rate)} | {r.median.p99_ms:.1f} ms | {rounds} |")
        return lines

    # -- scenarios ---------------------------------------------------------------------------------

    def scenario_tools_call(self) -> None:
        print("\n== tools/call, JSON answers, one session per server", flush=True)
        ours = Peer("mcp-tornado", self.g1, "/bench/mcp", self.auth("bench"))
        sdk = Peer("python-sdk MCPServer + uvicorn, json_response=True", self.sdk["json"], "/mcp")
        assert self.floor is not None
        floor = Peer("floor: bare Tornado handler, parses the body, fixed result", self.floor, "/mcp")
        peers = [ours, sdk, floor]
        for peer in peers:
            if peer is floor:  # the very request the gateway gets (its session and token), which it ignores
                floor.headers = dict(ours.headers)
            asyncio.run(self.prepare(peer, session=peer is not floor))
        if self.node is not None:
            node = Peer("Express + TypeScript SDK (enableJsonResponse)", self.node, "/mcp")
            asyncio.run(self.prepare(node, session=True))
            peers.append(node)
        else:
            self.notes.append("tools_call: no Node row (needs node and .tools/bench-node; `make bench` installs it)")
        results = self.load(peers, self.args.duration, self.args.rounds, "tools_call")
        if results is None:
            self.verdicts += [Verdict("tools/call JSON vs SDK", "-", ">= 3.0x", None)]
            return
        base, fl, me = results[sdk.label].median, results[floor.label].median, results[ours.label].median
        table = ["| server | rps | p99 | vs SDK | vs floor |", "| --- | ---: | ---: | ---: | ---: |"]
        for peer in peers:
            m = results[peer.label].median
            table.append(
                f"| {peer.label} | {fmt_rate(m.rate)} | {m.p99_ms:.1f} ms | {ratio(m.rate, base.rate)} | "
                f"{ratio(m.rate, fl.rate)} |"
            )
        rounds = "; ".join(
            f"{p.label.split(':')[0]}: " + ", ".join(fmt_rate(r.rate) for r in results[p.label].runs) for p in peers
        )
        self.sections.append(
            f"### tools/call, JSON answers ({self.args.connections} connections, {self.args.rounds} rounds of "
            f"{self.args.duration} s, median round)\n\n" + "\n".join(table) + f"\n\nAll rounds (rps): {rounds}"
        )
        self.verdicts += [
            Verdict("tools/call JSON: rps vs SDK", ratio(me.rate, base.rate), ">= 3.0x", me.rate >= 3.0 * base.rate),
            Verdict("tools/call JSON: rps vs floor", ratio(me.rate, fl.rate), ">= 0.85x", me.rate >= 0.85 * fl.rate),
            Verdict(
                "tools/call JSON: p99 vs floor's p99",
                f"{ratio(me.p99_ms, fl.p99_ms)} ({me.p99_ms:.1f} vs {fl.p99_ms:.1f} ms)",
                "<= 2x",
                me.p99_ms <= 2 * fl.p99_ms,
            ),
        ]

    def scenario_sse(self) -> None:
        print("\n== tools/call answered as SSE (the tool reports progress once)", flush=True)
        sse = "text/event-stream"
        ours = Peer(
            "mcp-tornado, SSE answer", self.g1, "/bench/mcp", self.auth("bench"), PROGRESS_CALL, content_type=sse
        )
        sdk = Peer("python-sdk, SSE mode (default)", self.sdk["sse"], "/mcp", {}, PROGRESS_CALL, content_type=sse)
        for peer in (ours, sdk):
            asyncio.run(self.prepare(peer, session=True))
        results = self.load([ours, sdk], self.args.extra_duration, self.args.rounds, "sse")
        if results is None:
            self.verdicts.append(Verdict("SSE answers vs SDK's SSE mode", "-", ">= 3x", None))
            return
        me, base = results[ours.label].median, results[sdk.label].median
        self.sections.append(
            "### SSE answers (progress, then the result)\n\n" + "\n".join(self.rows(results, [ours, sdk]))
        )
        self.verdicts.append(
            Verdict(
                "SSE answers vs SDK's SSE mode",
                f"{ratio(me.rate, base.rate)} ({fmt_rate(me.rate)} vs {fmt_rate(base.rate)} rps)",
                ">= 3x",
                me.rate >= 3 * base.rate,
            )
        )

    def scenario_stateless(self) -> None:
        print("\n== 2026-07-28 stateless tools/call, bearer token verified on every request", flush=True)
        headers = {**STATELESS_HEADERS, **self.auth("bench")}
        ours = Peer("mcp-tornado, 2026-07-28 + JWT", self.g1, "/bench/mcp", headers, STATELESS_CALL)
        sdk_auth = Peer(
            "python-sdk, 2026-07-28 + JWT TokenVerifier", self.sdk["stateless-auth"], "/mcp", headers, STATELESS_CALL
        )
        sdk = Peer(
            "python-sdk, 2026-07-28, no auth", self.sdk["stateless"], "/mcp", dict(STATELESS_HEADERS), STATELESS_CALL
        )
        peers = [ours, sdk_auth, sdk]
        for peer in peers:
            asyncio.run(self.prepare(peer, session=False))
        results = self.load(peers, self.args.extra_duration, self.args.rounds, "stateless")
        if results is None:
            self.verdicts.append(Verdict("2026-07-28 stateless vs SDK's", "-", ">= 2.5x", None))
            return
        me, base, bare = (results[p.label].median for p in peers)
        self.sections.append("### 2026-07-28 stateless requests\n\n" + "\n".join(self.rows(results, peers)))
        self.verdicts.append(
            Verdict(
                "2026-07-28 stateless vs SDK's (both verify a JWT)",
                f"{ratio(me.rate, base.rate)} ({fmt_rate(me.rate)} vs {fmt_rate(base.rate)} rps)",
                ">= 2.5x",
                me.rate >= 2.5 * base.rate,
                f"vs the SDK without auth: {ratio(me.rate, bare.rate)}",
            )
        )

    def scenario_shared(self) -> None:
        """tools/call on a session kept in Redis (MCP_REDIS_URL) against one kept in memory, same
        run; and two workers on Redis, unpinned (both CPUs, shared with wrk), as measured."""
        print("\n== tools/call, session in Redis vs in memory (one worker each), and two workers", flush=True)
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            self.notes.append("shared: no redis-server (apt-get install redis-server): not run")
            self.verdicts.append(Verdict("shared: Redis vs memory", "-", ">= 0.80x", None))
            return
        port = free_port()
        cmd = [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.start("redis", cmd, port=port)
        url = f"redis://127.0.0.1:{port}/0"
        directory = self.servers_dir("shared", {"bench.yaml": BENCH_YAML})
        memory = self.gateway("mcp-tornado-memory", directory)
        redis = self.gateway("mcp-tornado-redis", directory, {"MCP_REDIS_URL": url})
        gw_port = free_port()
        cmd = [PYTHON, "-m", "mcp_tornado", "serve", "--host", "127.0.0.1", "--port", str(gw_port)]
        env = {**os.environ, "JWT_SECRET": self.secret, "MCP_REDIS_URL": url, "MCP_WORKERS": "2"}
        two = spawn("mcp-tornado-redis-2-workers", [*cmd, "--servers-dir", str(directory)], self.tmp, env, gw_port)
        self.procs.append(two)  # not pinned: two workers on one CPU would measure nothing
        for proc in (memory, redis, two):
            wait_until_up(proc, "/health")
        peers = [
            Peer("mcp-tornado, session in memory", memory, "/bench/mcp", self.auth("bench")),
            Peer("mcp-tornado, session in Redis, 1 worker", redis, "/bench/mcp", self.auth("bench")),
            Peer("mcp-tornado, session in Redis, 2 workers (unpinned)", two, "/bench/mcp", self.auth("bench")),
        ]
        for peer in peers:
            asyncio.run(self.prepare(peer, session=True))
        results = self.load(peers, self.args.duration, self.args.rounds, "shared")
        if results is None:
            self.verdicts.append(Verdict("shared: Redis vs memory", "-", ">= 0.80x", None))
            return
        base = results[peers[0].label].median
        table = ["| server | rps | p99 | vs memory |", "| --- | ---: | ---: | ---: |"]
        for peer in peers:
            m = results[peer.label].median
            table.append(f"| {peer.label} | {fmt_rate(m.rate)} | {m.p99_ms:.1f} ms | {ratio(m.rate, base.rate)} |")
        self.sections.append("### tools/call, sessions in Redis (median round)\n\n" + "\n".join(table))
        shared = results[peers[1].label].median
        met = shared.rate >= 0.8 * base.rate
        self.verdicts.append(Verdict("shared: Redis vs memory", ratio(shared.rate, base.rate), ">= 0.80x", met))

    def scenario_churn(self) -> None:
        print("\n== session churn: initialize + notifications/initialized + DELETE", flush=True)
        asyncio.run(self.churn_check())
        if not self.has_wrk:
            self.verdicts.append(Verdict("session churn", "-", ">= 1,500 sessions/s", None))
            return
        script = self.tmp / "churn.lua"
        script.write_text(sessions_script(self.auth("bench"), delete=True))
        url = f"http://127.0.0.1:{self.g1.port}/bench/mcp"
        conns = 1 if self.smoke else self.args.churn_connections
        seconds = 1 if self.smoke else self.args.extra_duration + 2
        run = run_wrk("session churn", url, script, self.pinning, connections=conns, seconds=seconds, threads=conns)
        self.g1.check_alive()
        rate = run.counters["sessions"] / run.seconds
        print(
            f"  {fmt_rate(rate)} sessions/s ({run.counters['sessions']:.0f} in {run.seconds:.1f} s, "
            f"{conns} connections), p99 per request {run.p99_ms:.1f} ms",
            flush=True,
        )
        self.churn_rate = rate
        self.verdicts.append(
            Verdict(
                f"session churn ({conns} connections)",
                f"{fmt_rate(rate)} sessions/s (p99 per request {run.p99_ms:.1f} ms)",
                ">= 1,500 sessions/s",
                None if self.smoke else rate >= 1500,
            )
        )

    async def churn_check(self) -> None:
        conn = await HTTPConn.open(self.g1.port)
        try:
            headers = await open_session(conn, "/bench/mcp", self.auth("bench"))
            gone = await conn.request("DELETE", "/bench/mcp", headers)
            after = await conn.request(
                "POST", "/bench/mcp", {**BASE_HEADERS, **headers}, json.loads(CALL.replace("{id}", "1"))
            )
            if not 200 <= gone.status < 300 or after.status != 404:
                raise BenchError(f"DELETE: {gone.status}, then a call on the session: {after.status} (want 404)")
        finally:
            conn.close()

    def scenario_proxied(self) -> None:
        print(
            "\n== proxied calls: the SDK client calling an SDK upstream directly, and through the gateway", flush=True
        )
        calls = 10 if self.smoke else self.args.proxied_calls
        gateway = f"http://127.0.0.1:{self.g1.port}"
        targets = {
            "stdio direct": Target(stdio=self.pinning.server([PYTHON, str(PEERS / "upstream.py"), "stdio"])),
            "stdio via gateway": Target(url=f"{gateway}/stdio_up/mcp", headers=self.auth("stdio_up")),
            "url direct": Target(url=f"http://127.0.0.1:{self.upstream.port}/mcp"),
            "url via gateway": Target(url=f"{gateway}/url_up/mcp", headers=self.auth("url_up")),
            "in-process": Target(url=f"{gateway}/bench/mcp", headers=self.auth("bench")),
        }
        latencies = asyncio.run(sdk_client_latencies(targets, calls))
        median = {name: statistics.median(values) for name, values in latencies.items()}
        lines = [
            "| leg | direct median | direct p99 | via gateway median | via gateway p99 | added |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for leg, kind in (("command: (stdio child)", "stdio"), ("url: (Streamable HTTP upstream)", "url")):
            direct, via = latencies[f"{kind} direct"], latencies[f"{kind} via gateway"]
            dm, gm = median[f"{kind} direct"], median[f"{kind} via gateway"]
            added = gm / dm - 1
            lines.append(
                f"| {leg} | {dm * 1000:.2f} ms | {p99(direct) * 1000:.2f} ms | {gm * 1000:.2f} ms "
                f"| {p99(via) * 1000:.2f} ms | {added:+.0%} |"
            )
            print(f"  {leg}: direct {dm * 1000:.2f} ms, via gateway {gm * 1000:.2f} ms ({added:+.0%})", flush=True)
            self.verdicts.append(
                Verdict(
                    f"proxied {leg.split(' ')[0]} latency added",
                    f"{added:+.0%} ({gm * 1000:.2f} vs {dm * 1000:.2f} ms median)",
                    "<= +25%",
                    None if self.smoke else added <= 0.25,
                )
            )
        local = latencies["in-process"]
        lines.append(
            f"| (reference: the gateway's in-process `add`, no upstream) | | | {median['in-process'] * 1000:.2f} ms "
            f"| {p99(local) * 1000:.2f} ms | |"
        )
        self.sections.append(
            f"### Proxied calls ({calls} calls per leg, taking turns call by call; the SDK client, "
            '`mode="legacy"`)\n\n' + "\n".join(lines)
        )

    def scenario_idle(self) -> None:
        n = 200 if self.smoke else self.args.sessions
        keepalive = 1 if self.smoke else self.args.keepalive
        print(
            f"\n== {n:,} idle sessions with GET streams (keepalive every {keepalive} s), then a list_changed fan-out",
            flush=True,
        )
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if limit < 4 * n // 3 + 500:  # this process holds n sockets; the gateway caps connections at 3/4 of it
            self.notes.append(
                f"idle: {n:,} streams need `ulimit -n` >= {4 * n // 3 + 500} (have {limit}): not measured"
            )
            self.verdicts.append(Verdict(f"{n:,} idle sessions with GET streams", "-", "<= 250 MB", None))
            return
        directory = self.servers_dir("g2", {"fanout.yaml": FANOUT_YAML.format(description="v1", schema=ADD_SCHEMA)})
        cap = str(n + 100)
        env = {"MCP_MAX_SESSIONS": cap, "MCP_MAX_SESSIONS_PER_USER": cap, "MCP_SSE_KEEPALIVE": str(keepalive)}
        gateway = self.gateway("mcp-tornado-sessions", directory, env)
        try:
            wait_until_up(gateway, "/health")
            asyncio.run(self.idle_and_fanout(gateway, directory, n, keepalive))
        finally:
            self.stop(gateway)

    async def idle_and_fanout(self, gateway: Proc, directory: Path, n: int, keepalive: float) -> None:
        auth = self.auth("fanout")
        warm = await HTTPConn.open(gateway.port)  # one session first, so the baseline has every module loaded
        warm_headers = await open_session(warm, "/fanout/mcp", auth)
        await warm.request("DELETE", "/fanout/mcp", warm_headers)
        warm.close()
        await asyncio.sleep(0.2)
        rss_before = gateway.rss_kb()
        streams: list[Stream] = []
        started = time.monotonic()
        gate = asyncio.Semaphore(self.args.client_concurrency)

        async def one() -> None:
            async with gate:
                conn = await HTTPConn.open(gateway.port)
                headers = await open_session(conn, "/fanout/mcp", auth)
                conn.send("GET", "/fanout/mcp", {"Accept": "text/event-stream", **headers})
                status, response_headers = await conn.read_head()
                if status != 200 or not response_headers.get("content-type", "").startswith("text/event-stream"):
                    raise BenchError(f"GET stream: HTTP {status} {response_headers}")
                stream = Stream(conn)
                streams.append(stream)
                stream.task = asyncio.ensure_future(stream.run())

        try:
            await asyncio.gather(*(one() for _ in range(n)))
            opened = time.monotonic() - started
            print(f"  {n:,} sessions and streams open in {opened:.1f} s", flush=True)
            deadline = time.monotonic() + 3 * keepalive + 15
            while not all(s.keepalives for s in streams):
                if time.monotonic() > deadline:
                    missing = sum(1 for s in streams if not s.keepalives)
                    raise BenchError(f"{missing} of {n} GET streams got no keepalive within {3 * keepalive + 15:.0f} s")
                gateway.check_alive()
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            rss_after = gateway.rss_kb()
            if any(s.error for s in streams):
                raise BenchError(f"a GET stream failed: {next(s.error for s in streams if s.error)}")
            per_session = (rss_after - rss_before) / n
            print(
                f"  RSS {rss_before / 1024:.0f} MB before, {rss_after / 1024:.0f} MB with {n:,} streams "
                f"({per_session:.1f} KB per session); every stream has had a keepalive",
                flush=True,
            )
            self.verdicts.append(
                Verdict(
                    f"{n:,} idle sessions with GET streams: gateway RSS",
                    f"{rss_after / 1024:.0f} MB ({per_session:.1f} KB per session, {rss_before / 1024:.0f} MB empty)",
                    "<= 250 MB for 10,000",
                    None if self.smoke else (rss_after / 1024 <= 250 and n >= 10_000),
                )
            )

            # the fan-out: a new version of the definition file. The arrival times are this client's, so its
            # own loop lag (how late a 1 ms sleep wakes up) is watched too: it bounds the client's share.
            lag = LoopLag()
            lag.start()
            t0 = time.monotonic()
            for s in streams:
                s.t0 = t0
            (directory / "fanout.yaml").write_text(FANOUT_YAML.format(description="v2", schema=ADD_SCHEMA))
            deadline = t0 + 30
            while not all(s.changed_at for s in streams):
                if time.monotonic() > deadline:
                    got = sum(1 for s in streams if s.changed_at)
                    raise BenchError(f"tools/list_changed reached {got} of {n} GET streams within 30 s")
                await asyncio.sleep(0.005)
            client_lag = await lag.stop()
            delays = sorted(s.changed_at - t0 for s in streams if s.changed_at)
            last, median = delays[-1], statistics.median(delays)
            print(
                f"  tools/list_changed on all {n:,} streams {last * 1000:.0f} ms after the write "
                f"(first {delays[0] * 1000:.0f} ms, median {median * 1000:.0f} ms, "
                f"p90 {delays[int(0.9 * len(delays))] * 1000:.0f} ms, p99 {p99(delays) * 1000:.0f} ms; "
                "this client's loop lagged "
                f"{client_lag * 1000:.0f} ms at worst)",
                flush=True,
            )
            self.verdicts.append(
                Verdict(
                    f"tools/list_changed to {n:,} GET streams",
                    f"{last:.2f} s to the last (median {median:.2f} s; client loop lag <= {client_lag * 1000:.0f} ms)",
                    "<= 1 s for 10,000",
                    None if self.smoke else (last <= 1.0 and n >= 10_000),
                )
            )
        finally:
            for s in streams:
                s.close()

    def scenario_reaping(self) -> None:
        n = 500 if self.smoke else self.args.reap_sessions
        # The reaper's first run must meet all n sessions idle at once: it is set to come after a budget of
        # time to open them (from this run's churn rate when known, else --reap-budget), plus the 1 s idle
        # timeout and a margin. Opening stops at n or when the budget is spent, whichever comes first.
        if self.smoke:
            budget = 2
        elif self.args.reap_budget:
            budget = self.args.reap_budget
        else:
            rate = 1.5 * self.churn_rate if self.churn_rate else 1000.0  # two requests per session, not three
            budget = int(min(90, max(10, 1.2 * n / rate + 2)))
        interval = budget + 3
        print(
            f"\n== reaping {n:,} idle sessions (idle timeout 1 s; {budget} s to open them; the reaper first runs "
            f"{interval} s after the gateway starts)",
            flush=True,
        )
        directory = self.servers_dir("g3", {"reap.yaml": BENCH_YAML.replace("name: bench", "name: reap")})
        cap = str(n + 1000)
        env = {
            "MCP_MAX_SESSIONS": cap,
            "MCP_MAX_SESSIONS_PER_USER": cap,
            "MCP_SESSION_IDLE_TIMEOUT": "1",
            "MCP_SESSION_CLEANUP_INTERVAL": str(interval),
        }
        gateway = self.gateway("mcp-tornado-reaping", directory, env)
        try:
            started = time.monotonic()  # the reaper's clock starts a little later, when the gateway listens
            wait_until_up(gateway, "/health")
            made = self.open_idle_sessions(gateway, n, started + budget)
            self.reap_rss_kb = gateway.rss_kb()
            asyncio.run(self.reaping(gateway, made, n, started + interval))
        finally:
            self.stop(gateway)

    def open_idle_sessions(self, gateway: Proc, n: int, deadline: float) -> int:
        """Open up to n sessions (initialize + notifications/initialized) before `deadline`; returns how many."""
        started = time.monotonic()
        if self.has_wrk:
            threads = 1 if self.smoke else self.args.churn_connections
            script = self.tmp / "idle-sessions.lua"
            script.write_text(sessions_script(self.auth("reap"), delete=False, quota=-(-n // threads)))
            seconds = max(1, int(deadline - time.monotonic()))
            url = f"http://127.0.0.1:{gateway.port}/reap/mcp"
            run = run_wrk(
                "opening idle sessions",
                url,
                script,
                self.pinning,
                connections=threads,
                seconds=seconds,
                threads=threads,
            )
            made = int(run.counters["sessions"])
        else:
            made = asyncio.run(self.open_with_python(gateway, n, deadline))
        took = time.monotonic() - started
        print(
            f"  {made:,} sessions opened in a {took:.0f} s budget; gateway RSS {gateway.rss_kb() / 1024:.0f} MB",
            flush=True,
        )
        return made

    async def open_with_python(self, gateway: Proc, n: int, deadline: float) -> int:
        auth = self.auth("reap")
        remaining = iter(range(n))
        made = 0

        async def worker() -> None:
            nonlocal made
            conn = await HTTPConn.open(gateway.port)
            try:
                for _ in remaining:
                    if time.monotonic() > deadline:
                        return
                    await open_session(conn, "/reap/mcp", auth)
                    made += 1
            finally:
                conn.close()

        await asyncio.gather(*(worker() for _ in range(self.args.client_concurrency)))
        return made

    async def reaping(self, gateway: Proc, made: int, n: int, first_run: float) -> None:
        """Poll GET /health one request after another (2 ms apart) until the reaper has ended every session;
        the slowest answer while it runs is the stall a client sees."""
        samples: list[tuple[float, float, int]] = []  # (sent, seconds to answer, sessions) of each /health
        polled_from = time.monotonic()
        probe = await HTTPConn.open(gateway.port)
        gone_at = 0.0
        try:
            while True:
                sent = time.monotonic()
                response = await probe.request("GET", "/health", {})
                took = time.monotonic() - sent
                sessions = response.json()["servers"]["reap"]["sessions"]
                samples.append((sent, took, sessions))
                if sessions == 0 and not gone_at:
                    gone_at = sent
                if gone_at and sent > gone_at + 0.2:  # 0.2 s more: a stall right after the last one counts too
                    break
                if sent > first_run + 60:
                    raise BenchError(f"reaping: {sessions} of {made} sessions still there 60 s after the reaper ran")
                await asyncio.sleep(0.002)
        finally:
            probe.close()
        gateway.check_alive()
        # wrk counts a session once notifications/initialized is answered; those cut short by its end are idle too
        if not made <= samples[0][2] <= made + max(self.args.churn_connections, self.args.client_concurrency):
            raise BenchError(f"reaping: /health counted {samples[0][2]} sessions, {made} were opened")
        made = samples[0][2]
        counts = [
            int(line.split("reaped ")[1].split()[0]) for line in gateway.tail(200_000).splitlines() if "reaped" in line
        ]
        first_drop = next(i for i, s in enumerate(samples) if s[2] < made)
        quiet = [took for _, took, _ in samples[:first_drop]]
        during = samples[max(0, first_drop - 1) :]  # from the last poll sent before the reaper ran
        worst = max(took for _, took, _ in during)
        gone = next(s for s in samples[first_drop:] if s[2] == 0)
        reap_seconds = gone[0] + gone[1] - during[0][0]
        quiet_text = (
            f"quiet before: median {statistics.median(quiet) * 1000:.1f} ms, worst {max(quiet) * 1000:.1f} ms"
            if quiet
            else "no quiet polls"
        )
        print(
            f"  reaper batches {counts}; /health worst {worst * 1000:.1f} ms while reaping ({quiet_text}, "
            f"{len(samples)} polls from {first_run - polled_from:.1f} s before the run); all gone within "
            f"{reap_seconds:.2f} s",
            flush=True,
        )
        complete = made >= n and counts[:1] == [made]
        met: bool | None = None if self.smoke else worst <= 0.050
        if not complete and not self.smoke:
            # Fewer sessions at once can only stall less: a stall past the target already settles it.
            met = False if worst > 0.050 and counts[:1] == [made] else None
            self.notes.append(
                f"reaping: {made:,} of {n:,} sessions opened in the budget (raise --reap-budget), the reaper's "
                f"first run met {counts[:1]}" + (": already over the target at that size" if met is False else "")
            )
        self.verdicts.append(
            Verdict(
                f"reaping {made:,} idle sessions at once: worst /health answer while the reaper runs",
                f"{worst * 1000:.0f} ms (reaper batches {counts}; all gone within {reap_seconds:.2f} s; {quiet_text}; "
                f"gateway RSS {self.reap_rss_kb / 1024:.0f} MB with them)",
                "<= 50 ms stall, 100,000 sessions",
                met,
            )
        )

    # -- the profile -------------------------------------------------------------------------------

    def profile(self, seconds: int) -> None:
        """py-spy samples the gateway while wrk drives tools/call JSON; prints the top 15 (own, total)."""
        py_spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        if not Path(py_spy).exists() or not self.has_wrk:
            self.notes.append("profile: needs py-spy (pip install py-spy) and wrk")
            return
        print(f"\n== profile: py-spy on the gateway (pid {self.g1.pid}) for {seconds} s under wrk", flush=True)
        ours = Peer("mcp-tornado (profiled)", self.g1, "/bench/mcp", self.auth("bench"))
        asyncio.run(self.prepare(ours, session=True))
        script = self.tmp / "profile.lua"
        script.write_text(
            call_script({**BASE_HEADERS, **ours.headers}, ours.body, ours.must_contain, ours.content_type)
        )
        wrk = subprocess.Popen(
            self.pinning.client(
                ["wrk", "-t1", f"-c{self.args.connections}", f"-d{seconds + 3}s", "-s", str(script), ours.url]
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        out = self.tmp / "profile.txt"
        time.sleep(1.5)
        cmd = [
            py_spy,
            "record",
            "--pid",
            str(self.g1.pid),
            "--duration",
            str(seconds),
            "--rate",
            "250",
            "--format",
            "raw",
            "--nolineno",
            "-o",
            str(out),
        ]
        spy = subprocess.run(self.pinning.client(cmd), capture_output=True, text=True, check=False)
        wrk_out, _ = wrk.communicate()
        if spy.returncode != 0 or not out.exists():
            raise BenchError(f"py-spy failed: {spy.stdout}{spy.stderr}")
        if "bad_status=0 bad_body=0 socket_errors=0" not in wrk_out:
            raise BenchError(f"wrong answers while profiling: {wrk_out}")
        command = " ".join(shlex.quote(c) for c in cmd).replace(str(out), "profile.txt")
        self.sections.append(profile_tables(out, 15, command))

    def load_text(self) -> str:
        busy = ", ".join(f"CPU {cpu} {100 * f:.0f} %" for cpu, f in sorted(self.busy_before.items()))
        text = f"before the run, {busy} busy; load average at the end {os.getloadavg()[0]:.2f}"
        if any(f > 0.1 for f in self.busy_before.values()):
            text += " (a busy machine: the numbers are noisy and lower than on a quiet one)"
        return text

    # -- the report --------------------------------------------------------------------------------

    def report(self, elapsed: float) -> str:
        lines = [
            "| scenario | measured | target | verdict |",
            "| --- | --- | --- | --- |",
        ]
        for v in self.verdicts:
            note = f" ({v.note})" if v.note else ""
            lines.append(f"| {v.scenario} | {v.measured}{note} | {v.target} | {v.status()} |")
        parts = [*self.sections, "### Targets\n\n" + "\n".join(lines)]
        if self.notes:
            parts.append("Notes: " + "; ".join(self.notes))
        parts.append(f"mcp-tornado: {self.revision}. Pinning: {self.pinning.describe()}. Whole run: {elapsed:.0f} s.")
        parts.append(f"Other work on the machine: {self.load_text()}")
        return "\n\n".join(parts) + "\n"


class LoopLag:
    """The worst lateness of a 1 ms sleep in this process's loop while it runs."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.monotonic() - before - 0.001)

    async def stop(self) -> float:
        if self._task is not None:
            self._task.cancel()
        return self.worst


@dataclass
class Stream:
    """One session's GET stream, read until closed: counts keepalives, notes when list_changed arrives."""

    conn: HTTPConn
    keepalives: int = 0
    changed_at: float = 0.0
    t0: float = 0.0
    error: str = ""
    task: asyncio.Future[None] | None = None
    tail: bytes = b""

    async def run(self) -> None:
        try:
            while True:
                data = await self.conn.reader.read(65536)
                if not data:
                    self.error = self.error or "stream closed by the server"
                    return
                seen = self.tail + data
                self.keepalives += seen.count(b": keepalive")  # a marker split across reads is seen once
                if not self.changed_at and b"notifications/tools/list_changed" in seen and self.t0:
                    self.changed_at = time.monotonic()
                self.tail = data[-40:]
                if b"keepalive" in self.tail:
                    self.tail = b""
        except (OSError, asyncio.CancelledError) as exc:
            self.error = self.error or repr(exc)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.conn.close()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


@dataclass
class Target:
    """Where the SDK client connects: a command over stdio, or a Streamable HTTP URL with headers."""

    stdio: list[str] | None = None
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)


async def sdk_client_latencies(targets: dict[str, Target], calls: int) -> dict[str, list[float]]:
    """Latencies of `calls` `add` calls per target by the official SDK client, one call at a time, the
    targets taking turns call by call so that each sees the same machine (after 20 untimed rounds)."""
    from contextlib import AsyncExitStack

    from mcp import Client, StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client

    latencies: dict[str, list[float]] = {name: [] for name in targets}
    async with AsyncExitStack() as stack:
        clients = {}
        for name, target in targets.items():
            if target.stdio is not None:
                server: Any = StdioServerParameters(command=target.stdio[0], args=target.stdio[1:])
            else:
                http = await stack.enter_async_context(httpx2.AsyncClient(headers=target.headers, timeout=30))
                server = streamable_http_client(target.url, http_client=http)
            clients[name] = await stack.enter_async_context(Client(server, mode="legacy"))
        for i in range(20 + calls):
            for name, client in clients.items():
                started = time.perf_counter()
                result = await client.call_tool("add", {"a": i, "b": 0.5})
                took = time.perf_counter() - started
                if result.is_error or float(result.content[0].text) != i + 0.5:  # type: ignore[union-attr]
                    raise BenchError(f"{name}: bad answer to add({i}, 0.5): {result}")
                if i >= 20:
                    latencies[name].append(took)
    return latencies


def profile_tables(raw: Path, top: int, command: str) -> str:
    """Own and total time per function from py-spy's collapsed stacks (`frame;frame;... count`)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [shorten(f) for f in stack.split(";")]
        if not frames[0].startswith("_run_module_as_main"):
            continue  # another thread (the handler pool, watchdog's observer, the child watcher): mostly waiting
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count

    def table(counter: collections.Counter[str], title: str) -> str:
        rows = [f"| {title} | % of samples | function (file) |", "| ---: | ---: | --- |"]
        # Frames under every sample (the interpreter's and the loop's entry points) say nothing: left out.
        ranked = [(frame, count) for frame, count in counter.most_common() if count < 0.98 * samples]
        for i, (frame, count) in enumerate(ranked[:top], 1):
            rows.append(f"| {i} | {100 * count / samples:.1f} % | `{frame}` |")
        return "\n".join(rows)

    return (
        f"### Profile: mcp-tornado under wrk, tools/call JSON ({samples} samples of the event loop's thread)\n\n"
        f"`{command}`\n\n" + table(own, "own time") + "\n\n" + table(total, "total time")
    )


def shorten(frame: str) -> str:
    """`func (/long/path/site-packages/pkg/mod.py)` -> `func (pkg/mod.py)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name


def write_results(text: str, path: Path) -> None:
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    command = "python bench/bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    header = "# Benchmark results\n\nEach `make bench` run appends a section (newest last).\n"
    existing = path.read_text() if path.exists() else header
    with path.open("w") as out:
        out.write(existing.rstrip("\n") + f"\n\n## {stamp}\n\n`{command.strip()}` on {machine()}\n\n{text}")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} x {model}, Python {sys.version.split()[0]}"


def on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Step:
    name: str
    run: Callable[[], None]


def steps(bench: Bench) -> Iterator[Step]:
    for name in bench.args.only:
        yield Step(name, getattr(bench, f"scenario_{name}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CI: toy sizes, ~3 s of load, no timing verdicts")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SCENARIOS,
        default=list(SCENARIOS),
        metavar="SCENARIO",
        help=f"run only these scenarios: {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk round, tools/call JSON")
    parser.add_argument("--extra-duration", type=int, default=3, help="seconds per wrk round, SSE and stateless")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved wrk rounds per peer (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of untimed wrk load per peer first")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (one session)")
    parser.add_argument("--churn-connections", type=int, default=8, help="wrk connections (and threads) for churn")
    parser.add_argument("--proxied-calls", type=int, default=300, help="timed calls per proxied leg")
    parser.add_argument("--sessions", type=int, default=10_000, help="idle sessions with GET streams")
    parser.add_argument("--keepalive", type=float, default=5, help="MCP_SSE_KEEPALIVE for the idle sessions")
    parser.add_argument("--reap-sessions", type=int, default=100_000, help="idle sessions to reap")
    parser.add_argument("--reap-budget", type=int, default=0, help="seconds to open them (default: from churn)")
    parser.add_argument("--client-concurrency", type=int, default=32, help="connections opening sessions at once")
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS", help="also profile with py-spy")
    parser.add_argument("--gateway-rev", metavar="REV", help="run the gateway of this git revision (git archive)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary folder (logs, wrk scripts)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and load to CPUs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file the run is appended to")
    parser.add_argument("--no-results", action="store_true", help="do not append to the results file")
    args = parser.parse_args()
    args.only = [s for s in SCENARIOS if s in args.only]

    bench = Bench(args)
    if not bench.has_wrk and not args.smoke:
        print("bench.py needs wrk on PATH (apt-get install wrk); --smoke runs without it.", file=sys.stderr)
        return 2
    raise_fd_limit()
    signal.signal(signal.SIGTERM, on_sigterm)  # stop the peers on the way out, as for Ctrl-C
    if bench.pinning.client_cpu is not None:
        os.sched_setaffinity(0, {bench.pinning.client_cpu})
    print(f"mcp-tornado benchmark{' (smoke)' if args.smoke else ''}: {bench.pinning.describe()}", flush=True)
    print(f"mcp-tornado: {bench.revision}; logs in {bench.tmp}", flush=True)
    bench.busy_before = cpu_busy(1.0)
    print(
        "other work on the machine before the run: "
        + ", ".join(f"CPU {cpu} {100 * f:.0f} % busy" for cpu, f in sorted(bench.busy_before.items())),
        flush=True,
    )
    started = time.monotonic()
    failed = False
    try:
        bench.start_peers()
        for step in steps(bench):
            step.run()
        if args.profile:
            bench.profile(args.profile)
    except BenchError as exc:
        print(f"\n*** BENCHMARK FAILED: {exc}", file=sys.stderr)
        failed = True
    except KeyboardInterrupt:
        failed = True
    finally:
        bench.stop_all()
    if failed:
        print(f"(logs kept in {bench.tmp})", file=sys.stderr)
        return 1
    text = bench.report(time.monotonic() - started)
    print("\n" + text)
    if not args.smoke and not args.no_results:
        write_results(text, args.results)
        print(f"appended to {args.results}")
    if not args.keep_logs:
        shutil.rmtree(bench.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
