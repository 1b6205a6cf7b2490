"""Fail on an import that points up the layers, on any import cycle, and on a long module
that does not say why it is long. Run by `make lint`.

The layers, bottom to top (README, "Development"); each may import its own and lower ones:

    bottom     definitions, auth, errors, settings, importer, logs, request_info, compat, telemetry, expansion,
               rate_limit, keys, keyring, revocations, watched_file, curation_rules, deadlines
    transport  the MCP wire of one session, the session table, SSE framing and buffers
    backends   in-process, app, stdio, remote, supervisor (never transport: it declares Protocols)
    hosting    registry, hosted server, watcher, store: transport and backends combined
    handlers   HTTP only
    top        app, server, http_server, workers, cli, __main__

Every import counts, `TYPE_CHECKING` ones and those inside functions included.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "mcp_tornado"
BOTTOM = {
    "definitions",
    "auth",
    "errors",
    "settings",
    "importer",
    "logs",
    "request_info",
    "compat",
    "telemetry",
    "tracing",
    "rate_limit",
    "expansion",
    "keys",
    "keyring",
    "revocations",
    "watched_file",
    "curation_rules",
    "deadlines",
}
TOP = {"app", "server", "http_server", "workers", "cli", "__main__"}
RANK = {"bottom": 0, "transport": 1, "backends": 1, "hosting": 2, "handlers": 3, "top": 4}
# transport and backends share a rank but must not know each other.
APART = {frozenset({"transport", "backends"})}
LONG_MODULE = 400  # lines; past it the module docstring must say why ("Long because ...")


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "bottom"  # the package itself: its version, nothing more
    head = parts[1]
    if head in BOTTOM or head == "__init__":
        return "bottom"
    if head in TOP:
        return "top"
    if head in ("transport", "backends", "hosting", "handlers"):
        return head
    raise SystemExit(f"{module}: no layer for it; add it to tools/check_layers.py")


def module_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main(root: Path) -> int:
    modules = {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}
    problems: list[str] = []
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {t for t in imports_of(path, module) if t in modules and t != module}
        graph[module] = targets
        mine = layer_of(module)
        for target in sorted(targets):
            theirs = layer_of(target)
            if RANK[theirs] > RANK[mine] or frozenset({mine, theirs}) in APART:
                problems.append(f"{path}: {module} ({mine}) imports {target} ({theirs})")
        lines = path.read_text(encoding="utf-8").count("\n")
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if lines > LONG_MODULE and "Long because" not in docstring:
            problems.append(f"{path}: {lines} lines; split it, or say in its docstring why it is long")
    for component in cycles({m: {t for t in ts if t != m.rpartition(".")[0]} for m, ts in graph.items()}):
        problems.append(f"import cycle: {' -> '.join(component)}")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent))
