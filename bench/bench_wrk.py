"""Benchmark server-side `tools/call` throughput with wrk: mcp-tornado against the official MCP SDK server.

Run from the repository root (needs `wrk` on PATH: `apt-get install wrk`):

    .venv/bin/python bench/bench_wrk.py [--duration 5] [--warmup 1] [--connections 8] [--runs 2]

It starts the same three peers as `bench_tools_call.py` (mcp-tornado, the SDK's `MCPServer` with SSE
responses, and with `json_response=True`), opens one MCP session on each with httpx2, and checks that
`add(1, 2)` answers 3. Then wrk, a C load generator that costs far less CPU than the servers, POSTs
`tools/call add(1, 2)` on that session, each request with its own JSON-RPC id, for D seconds with one
connection (sequential) and with C connections (concurrent); modes and peers are interleaved, R rounds.
A Lua hook counts non-2xx answers and bodies without a `"result"` (or with `"isError": true`); any such
answer, or any socket error, aborts the benchmark. It prints requests/s (best of the rounds, all rounds
alongside) and latency per peer and mode, then the ratio mcp-tornado / SDK for each mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx2
from bench_tools_call import BASE_HEADERS, Peer, Session, rpc, running_peers

CALL_BODY = '{"jsonrpc":"2.0","id":999,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}'

# Appended to the `wrk.headers[...]` lines written for each session. Each thread numbers its requests from
# its own base, so no two requests in flight share an id (the SDK stalls on a duplicate in-flight id).
WRK_SCRIPT = r"""
wrk.method = "POST"
local threads = {}

function setup(thread)
  thread:set("base", 1000000 * (#threads + 1))
  table.insert(threads, thread)
end

function init(args)
  counter, bad_status, no_result = 0, 0, 0
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, '{"jsonrpc":"2.0","id":' .. string.format("%d", base + counter)
    .. ',"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}')
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    bad_status = bad_status + 1
  elseif not body:find('"result"', 1, true) or body:find('"isError"%s*:%s*true') then
    no_result = no_result + 1
  end
end

function done(summary, latency, requests)
  local bad_status, no_result = 0, 0
  for _, thread in ipairs(threads) do
    bad_status = bad_status + thread:get("bad_status")
    no_result = no_result + thread:get("no_result")
  end
  local e = summary.errors
  io.write(string.format("BENCH requests=%d mean_us=%.1f p99_us=%d bad_status=%d no_result=%d socket_errors=%d\n",
    summary.requests, latency.mean, latency:percentile(99), bad_status, no_result,
    e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Run:
    rate: float  # wrk's Requests/sec
    mean_ms: float
    p99_ms: float


def open_session(peer: Peer) -> dict[str, str]:
    """Open an MCP session on `peer`, check one `add(1, 2)`, and return the headers that carry the session."""

    async def go() -> dict[str, str]:
        async with httpx2.AsyncClient(headers=BASE_HEADERS, timeout=30.0) as client:
            session = Session(client, peer)
            await session.open()
            _, reply = await rpc(client, peer.url, json.loads(CALL_BODY), session.headers)
            result = reply.get("result") or {}
            text = (result.get("content") or [{}])[0].get("text")
            if result.get("isError") or text is None or float(text) != 3:
                raise RuntimeError(f"{peer.label}: bad reply to add(1, 2): {reply}")
            print(f"  {peer.label}: add(1, 2) -> {text!r}", flush=True)
            return session.headers

    return asyncio.run(go())


def write_script(path: Path, headers: dict[str, str]) -> None:
    lines = [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in {**BASE_HEADERS, **headers}.items()]
    path.write_text("\n".join(lines) + WRK_SCRIPT)


def run_wrk(peer: Peer, script: Path, connections: int, seconds: int) -> Run:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), peer.url]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    rate = re.search(r"^Requests/sec:\s*([\d.]+)", proc.stdout, re.M)
    stats = re.search(r"^BENCH (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or not rate or not stats:
        raise RuntimeError(f"{peer.label}: wrk failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    fields = {k: float(v) for k, v in (item.split("=") for item in stats.group(1).split())}
    if fields["requests"] == 0 or fields["bad_status"] or fields["no_result"] or fields["socket_errors"]:
        raise RuntimeError(f"{peer.label}, {connections} connection(s): wrong answers or errors: {stats.group(1)}")
    return Run(float(rate.group(1)), fields["mean_us"] / 1000, fields["p99_us"] / 1000)


def report(peers: list[Peer], modes: list[int], runs: dict[tuple[str, int], list[Run]]) -> None:
    best = {key: max(rs, key=lambda r: r.rate) for key, rs in runs.items()}
    print(f"\n{'peer':<22} {'conns':>5} {'req/s':>8} {'mean ms':>8} {'p99 ms':>8}  all rounds (req/s)")
    for conns in modes:
        for peer in peers:
            b = best[peer.label, conns]
            rounds = " ".join(f"{r.rate:.0f}" for r in runs[peer.label, conns])
            print(f"{peer.label:<22} {conns:>5} {b.rate:>8.0f} {b.mean_ms:>8.2f} {b.p99_ms:>8.2f}  {rounds}")
    print("\nratio mcp-tornado / SDK (best req/s; >1 means mcp-tornado is faster)")
    for conns in modes:
        for peer in peers[1:]:
            ratio = best[peers[0].label, conns].rate / best[peer.label, conns].rate
            print(f"  vs {peer.label:<19} {conns:>2} connection(s) {ratio:>6.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="whole seconds per timed wrk run")
    parser.add_argument("--warmup", type=int, default=1, help="whole seconds of untimed load per peer first")
    parser.add_argument("--connections", type=int, default=8, help="connections in the concurrent mode")
    parser.add_argument("--runs", type=int, default=2, help="interleaved rounds per peer and mode; best is reported")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench_wrk.py needs wrk on PATH; install it first, e.g. `sudo apt-get install wrk`.", file=sys.stderr)
        return 2

    modes = [1, args.connections]
    runs: dict[tuple[str, int], list[Run]] = {}
    with running_peers() as peers, tempfile.TemporaryDirectory(prefix="mcp-bench-wrk-") as tmp:
        assert peers[0].label == "mcp-tornado"
        try:
            print("opening sessions and checking add(1, 2):")
            scripts = {}
            for i, peer in enumerate(peers):
                scripts[peer.label] = Path(tmp) / f"peer{i}.lua"
                write_script(scripts[peer.label], open_session(peer))
                run_wrk(peer, scripts[peer.label], args.connections, args.warmup)
            print(f"wrk: {args.duration} s per run, {args.runs} round(s), {args.warmup} s warm-up", flush=True)
            for round_no in range(1, args.runs + 1):
                for conns in modes:
                    for peer in peers:
                        print(f"  round {round_no}: {peer.label}, {conns} connection(s)", flush=True)
                        result = run_wrk(peer, scripts[peer.label], conns, args.duration)
                        runs.setdefault((peer.label, conns), []).append(result)
        except RuntimeError as exc:
            print(f"\n*** BENCHMARK ABORTED: {exc}", file=sys.stderr)
            return 1
    report(peers, modes, runs)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the peers and wrk are already stopped by then
        sys.exit(130)
