"""The `mcp-tornado` command: serve, token, check, connect. The only module that exits."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import stat
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mcp_tornado import __version__, auth, logs, workers
from mcp_tornado import definitions as specs
from mcp_tornado.errors import DefinitionError
from mcp_tornado.hosting.registry import ServerRegistry, is_definition
from mcp_tornado.server import Gateway, serve_forever
from mcp_tornado.settings import Settings, SettingsError

# `serve --dev` keeps its secret here, in the working directory, and uses it again on its next
# start, so `token` and `connect` run in the same directory sign tokens the dev server accepts.
# The folder holds a `.gitignore` of `*`: it stays out of any git repository it is created in.
DEV_DIR = Path(".mcp-tornado")
DEV_SECRET = DEV_DIR / "dev-secret"
# What `connect` tells people to run: pinned, so the flags it prints are ones that version takes.
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except SettingsError as exc:
        print(f"mcp-tornado: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-tornado", description="Host many MCP servers behind one port.")
    parser.add_argument("--version", action="version", version=f"mcp-tornado {__version__}")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--servers-dir", type=Path)
    serve.add_argument("--dev", action="store_true", help=f"secret kept in {DEV_SECRET}; print ready tokens")
    serve.add_argument("--workers", type=int, help="processes sharing the port (default 1; more need MCP_REDIS_URL)")
    serve.add_argument("--log-format", choices=logs.LOG_FORMATS, help="text lines (default) or one JSON object a line")
    serve.set_defaults(run=_serve)

    token = sub.add_parser("token", help="print a JWT for a server, or an admin JWT")
    token.add_argument("server", nargs="?")
    token.add_argument("--admin", action="store_true")
    token.add_argument("--api-key")
    token.add_argument("--user")
    token.add_argument("--ttl", type=float, default=3600)
    token.set_defaults(run=_token)

    check = sub.add_parser("check", help="validate definition files offline")
    check.add_argument("paths", nargs="*", type=Path)
    check.set_defaults(run=_check)

    connect = sub.add_parser("connect", help="print client configuration for a server")
    connect.add_argument("server")
    connect.add_argument("--host")
    connect.add_argument("--port", type=int)
    connect.add_argument("--api-key")
    connect.add_argument("--user")
    connect.add_argument("--ttl", type=float, default=86400)
    connect.add_argument("--servers-dir", type=Path, help="where to find the server's api_keys (default: servers.d)")
    connect.set_defaults(run=_connect)
    return parser


def _serve(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    kept = args.dev and not environ.get("JWT_SECRET")
    if kept:
        environ["JWT_SECRET"] = _dev_secret(create=True) or ""
    settings = Settings.from_environ(
        environ,
        host=args.host,
        port=args.port,
        servers_dir=args.servers_dir,
        dev=args.dev or None,
        workers=args.workers,
        log_format=args.log_format,
    )
    logs.configure(settings.log_format)  # rate-limited: clients can make us log at will
    if settings.jwt_secret and len(settings.jwt_secret.encode()) < auth.MIN_SECRET_BYTES:
        logging.getLogger("mcp_tornado").warning(
            "JWT_SECRET is shorter than %d bytes; HS256 wants at least that much (RFC 7518 3.2)", auth.MIN_SECRET_BYTES
        )
    if settings.workers > 1:  # N processes on one port, each a whole gateway (workers.py)
        announce = f"mcp-tornado {__version__} on http://{settings.host}:%d ({settings.workers} workers)"
        return workers.serve(settings, lambda port: print(announce % port, flush=True))
    gateway = Gateway(settings)

    def ready(port: int) -> None:
        if args.dev:
            _print_dev_tokens(gateway, settings, port, kept)
        else:
            print(f"mcp-tornado {__version__} on http://{settings.host}:{port}", flush=True)

    asyncio.run(serve_forever(gateway, ready))
    return 0


def _print_dev_tokens(gateway: Gateway, settings: Settings, port: int, kept: bool) -> None:
    assert settings.jwt_secret
    base = f"http://{settings.host}:{port}"
    lines = [f"mcp-tornado {__version__} (dev) on {base}", f"  health: {base}/health"]
    if kept:
        lines.append(f"  secret: {DEV_SECRET} (`mcp-tornado token` and `connect` run here sign with it)")
    admin = auth.mint(
        settings.jwt_secret, admin=True, ttl=86400, issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    lines += ["", f"  admin token: {admin}"]
    for hosted in gateway.registry:
        key = _plain_key(hosted.spec)
        token = auth.mint(
            settings.jwt_secret,
            server_name=hosted.name,
            api_key=key,
            user_id="dev",
            ttl=86400,
            issuer=_claim(settings.environ, "JWT_ISSUER"),
            audience=_claim(settings.environ, "JWT_AUDIENCE"),
        )
        lines += ["", f"  {hosted.name}: {base}/{hosted.name}/mcp", f"    Authorization: Bearer {token}"]
    for problem in gateway.registry.problems.values():
        lines.append(f"  problem: {problem}")
    print("\n".join(lines), flush=True)


def _claim(environ: Mapping[str, str], variable: str) -> str | None:
    """The issuer or audience the gateway checks (JWT_ISSUER, JWT_AUDIENCE), for tokens we mint."""
    return environ.get(variable) or None


def _secret() -> str:
    """`JWT_SECRET`, else the secret a dev server keeps in this directory (`DEV_SECRET`)."""
    secret = os.environ.get("JWT_SECRET") or _dev_secret(create=False)
    if not secret:
        raise SettingsError(
            "JWT_SECRET: required to sign tokens"
            f" (or run `mcp-tornado serve --dev` here first: it keeps one in {DEV_SECRET})"
        )
    return secret


def _dev_secret(*, create: bool) -> str | None:
    """The dev server's secret from `DEV_SECRET`; None when there is none and `create` is False,
    else a new one, written where only this user can read it (0600, never through a symlink).

    Raises `SettingsError` for a file others may read or that is not a regular file of ours.
    """
    try:
        return _read_secret(DEV_SECRET)
    except FileNotFoundError:
        if not create:
            return None
    DEV_DIR.mkdir(mode=0o700, exist_ok=True)
    ignore = DEV_DIR / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by `mcp-tornado serve --dev`: a secret lives here, keep it out of git\n*\n")
    secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(DEV_SECRET, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:  # another dev server made it meanwhile
        return _read_secret(DEV_SECRET)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    return secret


def _read_secret(path: Path) -> str:
    """Raises `FileNotFoundError` when there is no file, `SettingsError` for one that will not do."""
    refused = SettingsError(f"{path}: must be a file of yours only you can read (chmod 600), or delete it")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError:  # a symlink (ELOOP), a file we may not read
        raise refused from None
    with os.fdopen(fd) as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode) or status.st_mode & 0o077 or status.st_uid != os.getuid():
            raise refused
        secret = file.read().strip()
    if not secret:
        raise SettingsError(f"{path}: empty; delete it and start `mcp-tornado serve --dev` again")
    return secret


def _plain_key(spec: specs.ServerSpec) -> str | None:
    """The first API key a server's definition gives in plain text (dev only), for ready tokens."""
    return next((k for k in spec.api_keys if not k.startswith("sha256:")), None)


def _definition_of(server: str, directory: Path) -> specs.ServerSpec | None:
    """The valid definition in `directory` whose route name is `server`, if there is one."""
    paths = sorted(p for p in directory.iterdir() if is_definition(p)) if directory.is_dir() else []
    for path in paths:
        try:
            spec = specs.load_file(path)
        except DefinitionError:
            continue
        if spec.name == server:
            return spec
    return None


def _token(args: argparse.Namespace) -> int:
    if args.admin == bool(args.server):
        print("mcp-tornado token: give either SERVER or --admin", file=sys.stderr)
        return 2
    if args.admin:
        print(
            auth.mint(
                _secret(),
                admin=True,
                ttl=args.ttl,
                issuer=_claim(os.environ, "JWT_ISSUER"),
                audience=_claim(os.environ, "JWT_AUDIENCE"),
            )
        )
    else:
        print(
            auth.mint(
                _secret(),
                server_name=args.server,
                api_key=args.api_key,
                user_id=args.user,
                ttl=args.ttl,
                issuer=_claim(os.environ, "JWT_ISSUER"),
                audience=_claim(os.environ, "JWT_AUDIENCE"),
            )
        )
    return 0


def _check(args: argparse.Namespace) -> int:
    paths: list[Path] = []
    for path in args.paths or [Path(os.environ.get("MCP_SERVERS_DIR", "servers.d"))]:
        paths += sorted(p for p in path.iterdir() if is_definition(p)) if path.is_dir() else [path]
    problems = 0
    for path in paths:
        try:
            spec = specs.load_file(path)
            directory = path.parent
            registry = ServerRegistry(Settings.from_environ(os.environ, servers_dir=directory, dev=True))
            registry.build_backend(spec)
        except DefinitionError as exc:
            print(exc)
            problems += 1
        else:
            print(f"{path}: ok ({spec.name})")
    return 1 if problems else 0


def _connect(args: argparse.Namespace) -> int:
    host = args.host or os.environ.get("HOST", "127.0.0.1")
    port = args.port or int(os.environ.get("PORT", "8080"))
    url = f"http://{host}:{port}/{args.server}/mcp"
    api_key = args.api_key
    if api_key is None:  # the key `serve --dev` would use: the definition's first plain one
        directory = args.servers_dir or Path(os.environ.get("MCP_SERVERS_DIR") or "servers.d")
        spec = _definition_of(args.server, directory)
        if spec is None:
            print(f"mcp-tornado connect: no valid definition of {args.server} in {directory}", file=sys.stderr)
        elif spec.api_keys and (api_key := _plain_key(spec)) is None:
            print(
                f"mcp-tornado connect: {args.server} lists only sha256 API keys: pass the key with --api-key",
                file=sys.stderr,
            )
    token = auth.mint(
        _secret(),
        server_name=args.server,
        api_key=api_key,
        user_id=args.user,
        ttl=args.ttl,
        issuer=_claim(os.environ, "JWT_ISSUER"),
        audience=_claim(os.environ, "JWT_AUDIENCE"),
    )
    headers = {"Authorization": f"Bearer {token}"}
    configs = {
        "Claude Desktop (claude_desktop_config.json)": {
            "mcpServers": {
                args.server: {
                    "command": "npx",
                    "args": ["-y", "mcp-remote", url, "--header", f"Authorization:Bearer {token}"],
                }
            }
        },
        "Cursor (.cursor/mcp.json)": {"mcpServers": {args.server: {"url": url, "headers": headers}}},
        "VS Code (.vscode/mcp.json)": {"servers": {args.server: {"type": "http", "url": url, "headers": headers}}},
    }
    for title, config in configs.items():
        print(f"# {title}\n{json.dumps(config, indent=2)}\n")
    inspector = f"npx {INSPECTOR}"
    print(f"# MCP Inspector\n{inspector} --transport http --server-url {url} --header 'Authorization: Bearer {token}'")
    # Clients that speak only the 2024-11-05 HTTP+SSE transport (mcp's sse_client, `transport: sse`).
    sse_url = f"http://{host}:{port}/{args.server}/sse"
    print(f"\n# Legacy HTTP+SSE clients: {sse_url} (same Authorization header)")
    print(f"{inspector} --transport sse --server-url {sse_url} --header 'Authorization: Bearer {token}'")
    return 0
