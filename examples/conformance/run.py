#!/usr/bin/env python3
"""`make conformance`: the official MCP conformance suite against mcp-tornado, in four legs.

    .venv/bin/python examples/conformance/run.py [--legs sdk,inprocess,stdio,remote]
                                                 [--spec-versions 2025-11-25,2026-07-28]

Legs (each run with `--suite all` at every spec version):

    sdk        fixture_server.py served directly by the official SDK: the reference
    inprocess  mcp-tornado /fixture/mcp         (servers.d/fixture.yaml, in-process handlers)
    stdio      mcp-tornado /fixture_stdio/mcp   (servers.d/fixture_stdio.yaml, command: backend)
    remote     mcp-tornado /fixture_remote/mcp  (servers.d/fixture_remote.yaml, url: backend)

Installs node 22 and the suite (both pinned, below) into .tools/ when absent, starts the
fixture's HTTP servers and `mcp-tornado serve --servers-dir examples/conformance/servers.d`
on free ports, runs the suite, prints a table (leg x spec version: passed / failed /
warnings, beside the reference's count), writes everything under
examples/conformance/results/ (summary.md, summary.json, the suite's checks.json per
scenario, every log), stops everything it started, and exits 1 if any check failed.
Standard library only; needs npm on PATH the first time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

# Pinned: the newest suite that runs `--suite all` at both spec versions, and the node it needs (>= 22).
CONFORMANCE_VERSION = "0.2.0-alpha.12"
NODE_VERSION = "22.23.3"
SPEC_VERSIONS = ("2025-11-25", "2026-07-28")
RUN_TIMEOUT = 300  # seconds for one `--suite all` run; the suite's own per-scenario limit is 30 s

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SERVERS_DIR = HERE / "servers.d"
RESULTS = HERE / "results"
TOOLS = ROOT / ".tools"
NODE_PREFIX = TOOLS / "node22"
SUITE_PREFIX = TOOLS / "conformance"
NODE = NODE_PREFIX / "node_modules" / "node" / "bin" / "node"
SUITE_PACKAGE = SUITE_PREFIX / "node_modules" / "@modelcontextprotocol" / "conformance"
SUITE = SUITE_PACKAGE / "dist" / "index.js"

LEGS: dict[str, tuple[str, str]] = {  # leg -> (what it is, route on the gateway or "" for the SDK itself)
    "sdk": ("fixture_server.py served by the SDK (reference)", ""),
    "inprocess": ("mcp-tornado, in-process (fixture.yaml)", "/fixture/mcp"),
    "stdio": ("mcp-tornado, command: (fixture_stdio.yaml)", "/fixture_stdio/mcp"),
    "remote": ("mcp-tornado, url: (fixture_remote.yaml)", "/fixture_remote/mcp"),
}
GATEWAY_SERVERS = ("fixture", "fixture_stdio", "fixture_remote")


def say(message: str) -> None:
    print(f"[conformance] {message}", flush=True)


# -- tools ------------------------------------------------------------------------------------


def npm_install(prefix: Path, package: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is needed once, to install node 22 and the suite into .tools/ (apt-get install npm)")
    prefix.mkdir(parents=True, exist_ok=True)
    say(f"npm install {package} into {prefix.relative_to(ROOT)}")
    subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix), package], check=True
    )


def installed_version(package_json: Path) -> str | None:
    try:
        return str(json.loads(package_json.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_tools() -> None:
    if installed_version(NODE_PREFIX / "node_modules" / "node" / "package.json") != NODE_VERSION or not NODE.exists():
        npm_install(NODE_PREFIX, f"node@{NODE_VERSION}")
    if installed_version(SUITE_PACKAGE / "package.json") != CONFORMANCE_VERSION or not SUITE.exists():
        npm_install(SUITE_PREFIX, f"@modelcontextprotocol/conformance@{CONFORMANCE_VERSION}")
    version = subprocess.run([str(NODE), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    suite = subprocess.run([str(NODE), str(SUITE), "--version"], capture_output=True, text=True, check=True)
    say(f"node {version}, @modelcontextprotocol/conformance {suite.stdout.strip()}")


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Processes:
    """What this script started, each in its own process group, stopped in reverse order."""

    def __init__(self) -> None:
        self.running: list[tuple[str, subprocess.Popen[bytes], Any]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        handle = log.open("wb")
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.running.append((name, process, handle))
        say(f"started {name} (pid {process.pid}), log {log.relative_to(ROOT)}")
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        for entry in list(self.running):
            if entry[1] is process:
                self._stop(*entry)
                self.running.remove(entry)

    def stop_all(self) -> None:
        while self.running:
            self._stop(*self.running.pop())

    @staticmethod
    def _stop(name: str, process: subprocess.Popen[bytes], handle: Any) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the gateway stops its stdio child itself
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # its own group, made by start_new_session
                process.wait()
        handle.close()
        say(f"stopped {name} (exit {process.returncode})")


def get_json(url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def wait_for(what: str, ready: Any, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{what} exited ({process.returncode}) before it was ready; see its log in {RESULTS}")
        with contextlib.suppress(OSError, ValueError):
            if ready():
                return
        time.sleep(0.2)
    sys.exit(f"{what} was not ready within {timeout:g} s; see its log in {RESULTS}")


def fixture_ready(port: int) -> bool:
    """The SDK's server answers a bare GET on /mcp (400/405/406) once it listens."""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/mcp", timeout=2)
    except urllib.error.HTTPError:
        return True
    return True


def gateway_states(port: int) -> dict[str, str]:
    status, health = get_json(f"http://127.0.0.1:{port}/health")
    servers = (health or {}).get("servers", {}) if status == 200 else {}
    return {name: str(servers.get(name, {}).get("state")) for name in GATEWAY_SERVERS}


def admin_token(env: dict[str, str]) -> str:
    argv = [sys.executable, "-m", "mcp_tornado", "token", "--admin", "--ttl", "600"]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.strip()


def staged_servers_dir(fixture_port: int) -> Path:
    """A copy of servers.d with `${FIXTURE_PORT}` written out, for a gateway that does not expand `url:`."""
    staged = RESULTS / "servers.d-staged"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(SERVERS_DIR, staged, ignore=shutil.ignore_patterns("__pycache__"))
    remote = staged / "fixture_remote.yaml"
    remote.write_text(remote.read_text().replace("${FIXTURE_PORT}", str(fixture_port)))
    # fixture_stdio.yaml's `../fixture_server.py` must still reach fixture_server.py.
    shutil.copy2(HERE / "fixture_server.py", RESULTS / "fixture_server.py")
    return staged


# -- the suite --------------------------------------------------------------------------------

SUMMARY_LINE = re.compile(r"^[✓✗] (?P<scenario>\S+): (?P<passed>\d+) passed, (?P<failed>\d+) failed$")
SCENARIO_COUNT = re.compile(r"^Running \S+ suite \((?P<count>\d+) scenarios\)")


def run_suite(leg: str, url: str, spec: str) -> dict[str, Any]:
    out = RESULTS / f"{leg}-{spec}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    argv = [str(NODE), str(SUITE), "server", "--url", url, "--suite", "all", "--spec-version", spec, "-o", str(out)]
    baseline = HERE / "expected-failures" / f"{leg}-{spec}.yaml"
    if baseline.is_file():  # known gaps, said why in the file: only a new failure (or a fixed one) fails the leg
        argv += ["--expected-failures", str(baseline)]
    log = RESULTS / f"{leg}-{spec}.log"
    started = time.monotonic()
    with log.open("w") as handle:
        handle.write("$ " + " ".join(argv) + "\n")
        handle.flush()
        try:
            code = subprocess.run(
                argv, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
    seconds = time.monotonic() - started
    text = log.read_text(errors="replace")
    by_scenario: dict[str, dict[str, int]] = {}
    scenarios = None
    for line in text.splitlines():
        if m := SUMMARY_LINE.match(line.strip()):
            by_scenario[m["scenario"]] = {"passed": int(m["passed"]), "failed": int(m["failed"])}
        elif m := SCENARIO_COUNT.match(line.strip()):
            scenarios = int(m["count"])
    checks: list[dict[str, Any]] = []
    for path in sorted(out.glob("server-*/checks.json")):
        scenario = re.sub(r"^server-|-\d{4}-\d\d-\d\dT[\d-]+Z$", "", path.parent.name)
        for check in json.loads(path.read_text()):
            checks.append({"scenario": scenario, **check})
    statuses = Counter(c["status"] for c in checks)
    # A scenario that threw is in the printed summary but left no checks.json: count it from there.
    failed = sum(s["failed"] for s in by_scenario.values())
    passed = sum(s["passed"] for s in by_scenario.values())
    if not by_scenario:  # the run died before its summary
        failed, passed = statuses["FAILURE"] or 1, statuses["SUCCESS"]
    return {
        "leg": leg,
        "spec": spec,
        "url": url,
        "exit_code": code,
        "baseline": baseline.name if baseline.is_file() else None,
        "seconds": round(seconds, 1),
        "scenarios": scenarios,
        "passed": passed,
        "failed": failed,
        "warnings": statuses["WARNING"],
        "info": statuses["INFO"],
        "skipped": statuses["SKIPPED"],
        "failed_scenarios": sorted(k for k, v in by_scenario.items() if v["failed"]),
        "checks": checks,
        "log": str(log.relative_to(ROOT)),
    }


# -- report -----------------------------------------------------------------------------------


def table(runs: list[dict[str, Any]], specs: list[str]) -> str:
    reference = {r["spec"]: r for r in runs if r["leg"] == "sdk"}
    counts = {r["spec"]: r["scenarios"] for r in runs if r["scenarios"]}
    lines = [
        "| leg | " + " | ".join(f"{spec} ({counts.get(spec, '?')} scenarios)" for spec in specs) + " |",
        "| --- | " + " | ".join("---" for _ in specs) + " |",
    ]
    for leg in dict.fromkeys(r["leg"] for r in runs):
        cells = []
        for spec in specs:
            run = next((r for r in runs if r["leg"] == leg and r["spec"] == spec), None)
            if run is None:
                cells.append("-")
                continue
            ref = reference.get(spec)
            of = f"/{ref['passed']}" if ref and leg != "sdk" else ""
            gaps = f" ({len(run['gaps'])} short of the reference)" if run.get("gaps") else ""
            cells.append(f"{run['passed']}{of} passed, {run['failed']} failed, {run['warnings']} warnings{gaps}")
        lines.append(f"| {leg}: {LEGS[leg][0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_gaps(runs: list[dict[str, Any]]) -> None:
    """For each leg: the checks the reference passed at that spec version that this leg did not."""
    for run in runs:
        ref = next((r for r in runs if r["leg"] == "sdk" and r["spec"] == run["spec"]), None)
        if ref is None or run is ref:
            continue
        got: dict[tuple[str, str], list[str]] = {}
        for c in run["checks"]:
            got.setdefault((c["scenario"], c["id"]), []).append(c["status"])
        wanted = dict.fromkeys((c["scenario"], c["id"]) for c in ref["checks"] if c["status"] == "SUCCESS")
        run["gaps"] = [
            {"scenario": s, "id": i, "status": "/".join(got.get((s, i), ["absent"]))}
            for s, i in wanted
            if "SUCCESS" not in got.get((s, i), [])
        ]


def gaps_markdown(runs: list[dict[str, Any]]) -> str:
    parts = []
    for run in runs:
        if run.get("gaps"):
            parts.append(f"\n### {run['leg']} at {run['spec']}: {len(run['gaps'])} checks the reference passes\n")
            parts.extend(f"- {g['scenario']} `{g['id']}`: {g['status']}" for g in run["gaps"])
    return "\n".join(parts)


def failures_markdown(runs: list[dict[str, Any]]) -> str:
    parts = []
    for run in runs:
        bad = [c for c in run["checks"] if c["status"] in ("FAILURE", "WARNING")]
        missing = [s for s in run["failed_scenarios"] if not any(c["scenario"] == s for c in run["checks"])]
        if not bad and not missing:
            continue
        parts.append(f"\n### {run['leg']} at {run['spec']} ({run['url']})\n")
        for scenario in missing:
            parts.append(f"- **{scenario}**: FAILURE, the scenario threw (no checks.json); see {run['log']}")
        for c in bad:
            message = (c.get("errorMessage") or "").replace("\n", " ")
            parts.append(f"- **{c['scenario']}** `{c['id']}` {c['status']}: {c.get('description', '')}. {message}")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--legs", default=",".join(LEGS), help=f"comma-separated, of {', '.join(LEGS)}")
    parser.add_argument("--spec-versions", default=",".join(SPEC_VERSIONS))
    args = parser.parse_args()
    legs = [leg for leg in args.legs.split(",") if leg]
    specs = [spec for spec in args.spec_versions.split(",") if spec]
    if unknown := [leg for leg in legs if leg not in LEGS]:
        parser.error(f"unknown leg(s): {', '.join(unknown)}")

    ensure_tools()
    shutil.rmtree(RESULTS, ignore_errors=True)
    RESULTS.mkdir(parents=True)
    processes = Processes()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    notes: list[str] = []
    runs: list[dict[str, Any]] = []
    try:
        env = dict(os.environ)
        env.setdefault("JWT_SECRET", secrets.token_urlsafe(32))
        env["PYTHON"] = sys.executable  # fixture_stdio.yaml: a Python with the `mcp` package
        ports = {"sdk": free_port(), "fixture": free_port(), "gateway": free_port()}
        env["FIXTURE_PORT"] = str(ports["fixture"])
        env["MCP_EXPAND_VARS"] = "PYTHON,FIXTURE_PORT"  # the only variables the definitions may expand
        fixture = [sys.executable, str(HERE / "fixture_server.py"), "--http"]

        if "sdk" in legs:
            sdk = processes.start(
                "sdk fixture", [*fixture, "--port", str(ports["sdk"])], env, RESULTS / "sdk-fixture.log"
            )
            wait_for("the SDK fixture server", lambda: fixture_ready(ports["sdk"]), sdk)

        gateway_legs = [leg for leg in legs if leg != "sdk"]
        if gateway_legs:
            upstream = processes.start(
                "url: upstream fixture",
                [*fixture, "--port", str(ports["fixture"])],
                env,
                RESULTS / "remote-fixture.log",
            )
            wait_for("the url: upstream fixture", lambda: fixture_ready(ports["fixture"]), upstream)
            gateway_port = ports["gateway"]
            serve = [sys.executable, "-m", "mcp_tornado", "serve", "--host", "127.0.0.1", "--port", str(gateway_port)]
            gateway = processes.start(
                "mcp-tornado", [*serve, "--servers-dir", str(SERVERS_DIR)], env, RESULTS / "gateway.log"
            )
            wait_for("mcp-tornado", lambda: "None" not in gateway_states(gateway_port).values(), gateway)
            if "remote" in gateway_legs:
                deadline = time.monotonic() + 5
                while gateway_states(gateway_port)["fixture_remote"] != "running" and time.monotonic() < deadline:
                    time.sleep(0.2)
                if gateway_states(gateway_port)["fixture_remote"] != "running":
                    token = admin_token(env)
                    _, detail = get_json(f"http://127.0.0.1:{gateway_port}/servers/fixture_remote", token)
                    error = json.dumps(detail)
                    if "${FIXTURE_PORT}" in error:
                        note = (
                            "mcp-tornado does not expand ${FIXTURE_PORT} in `url:` (fixture_remote: "
                            f"{(detail or {}).get('last_error') or error[:200]}); the gateway was restarted on "
                            "results/servers.d-staged/, a copy of servers.d with the port written out"
                        )
                        notes.append(note)
                        say("NOTE: " + note)
                        processes.stop(gateway)
                        staged = staged_servers_dir(ports["fixture"])
                        gateway = processes.start(
                            "mcp-tornado (staged)",
                            [*serve, "--servers-dir", str(staged)],
                            env,
                            RESULTS / "gateway-staged.log",
                        )
                        wait_for("mcp-tornado", lambda: "None" not in gateway_states(gateway_port).values(), gateway)
                    else:
                        notes.append(f"fixture_remote is not running: {error[:300]}")
            wanted = {LEGS[leg][1].split("/")[1] for leg in gateway_legs}  # "/fixture/mcp" -> "fixture"
            wait_for(
                f"{', '.join(sorted(wanted))} on mcp-tornado",
                lambda: all(gateway_states(gateway_port)[name] == "running" for name in wanted),
                gateway,
            )
            say(f"gateway states: {gateway_states(gateway_port)}")

        for leg in legs:
            url = (
                f"http://localhost:{ports['sdk']}/mcp"
                if leg == "sdk"
                else f"http://localhost:{ports['gateway']}{LEGS[leg][1]}"
            )
            for spec in specs:
                say(f"{leg} at {spec}: {url}")
                run = run_suite(leg, url, spec)
                runs.append(run)
                say(
                    f"  {run['passed']} passed, {run['failed']} failed, {run['warnings']} warnings "
                    f"({run['scenarios']} scenarios, {run['seconds']} s)"
                )
    finally:
        processes.stop_all()

    add_gaps(runs)
    rows = table(runs, specs)
    print("\n" + rows + "\n")
    for note in notes:
        print(f"NOTE: {note}")
    versions = f"@modelcontextprotocol/conformance@{CONFORMANCE_VERSION}, node {NODE_VERSION}"
    header = (
        f"# Conformance: {versions}\n\n`--suite all`; passed counts SUCCESS checks, as the suite does; "
        "X/Y is X passed of the Y the reference (the SDK serving fixture_server.py itself) passes.\n\n"
    )
    notes_md = "".join(f"\n- NOTE: {n}" for n in notes)
    (RESULTS / "summary.md").write_text(
        header
        + rows
        + "\n"
        + notes_md
        + "\n\n## Failures and warnings\n"
        + failures_markdown(runs)
        + "\n\n## Short of the reference (its SUCCESS checks that a leg did not pass)\n"
        + gaps_markdown(runs)
        + "\n"
    )
    summary = {"conformance": CONFORMANCE_VERSION, "node": NODE_VERSION, "notes": notes, "runs": runs}
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"reports: {RESULTS.relative_to(ROOT)}/summary.md, summary.json, <leg>-<spec>/ and <leg>-<spec>.log")
    failed = [
        f"{r['leg']}@{r['spec']}"
        for r in runs
        if (r["exit_code"] != 0 if r["baseline"] else r["failed"] or r["exit_code"] not in (0, 1))
    ]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
