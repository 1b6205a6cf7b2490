"""`command:` a stdio MCP server run as a supervised child process.

The `mcp` package's `stdio_client` spawns the child and, when the connection ends, closes its
stdin, waits, then terminates its whole process tree (SIGTERM, SIGKILL after a grace period),
so a removed, changed or crashed server never leaves a zombie or an orphan behind. On Linux
the command runs under `guard.py`, which takes the child's whole tree down with the gateway
even when the gateway is killed outright and closes nothing. The child's stderr goes to our
log, one line at a time, prefixed with the server's name; its last lines (`StderrTail`) are
shown to admins.

`${VAR}` in the command line and `env` is expanded from the operator's listed variables
(`mcp_tornado.expansion`); `cwd` must stay inside `servers.d/` (a definition problem otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mcp.client.stdio import StdioServerParameters, get_default_environment, stdio_client

from mcp_tornado.backends.stderr_tail import StderrTail
from mcp_tornado.backends.upstream import UpstreamBackend
from mcp_tornado.definitions import ServerSpec
from mcp_tornado.errors import DefinitionError
from mcp_tornado.expansion import Variables

logger = logging.getLogger("mcp_tornado.child")

GUARD = Path(__file__).resolve().with_name("guard.py")
GUARDED = sys.platform.startswith("linux")  # the guard needs prctl(2) and /proc


class StdioBackend(UpstreamBackend):
    kind = "command"

    def __init__(self, spec: ServerSpec, *, directory: Path, variables: Variables) -> None:
        command = spec.command
        assert command is not None
        argv = [_expand(variables, spec, field, arg) for field, arg in _argv_fields(spec, command.argv)]
        env = {key: _expand(variables, spec, f"env.{key}", value) for key, value in command.env.items()}
        cwd = _confined(spec, directory, command.cwd)
        self.params = StdioServerParameters(command=argv[0], args=argv[1:], env=env or None, cwd=cwd)
        spawned = guarded(argv)
        self._spawn = self.params.model_copy(update={"command": spawned[0], "args": spawned[1:]})
        super().__init__(spec, lazy=command.lazy, per_session=command.per_session, max_links=command.max_processes)
        # The last lines its children wrote to stderr (every child of the route, across restarts).
        self.stderr = StderrTail()

    def describe(self) -> dict[str, Any]:
        """As every upstream, plus the last lines of stderr (admin views only: `/health` skips it)."""
        return {**super().describe(), "stderr": self.stderr.lines()}

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[tuple[Any, Any]]:
        if GUARDED:
            _check_program(self.params)
        read_fd, write_fd = os.pipe()
        errlog = os.fdopen(write_fd, "w")
        lines = asyncio.ensure_future(_log_lines(read_fd, self.spec.name, self.stderr))
        try:
            async with stdio_client(self._spawn, errlog=errlog) as streams:
                errlog.close()  # the child holds its own copy; ours would keep the pipe open forever
                yield streams
        finally:
            if not errlog.closed:
                errlog.close()
            try:
                await asyncio.wait_for(lines, 2)
            except (TimeoutError, asyncio.CancelledError):
                lines.cancel()


def _argv_fields(spec: ServerSpec, argv: tuple[str, ...]) -> list[tuple[str, str]]:
    """Each word of the command line with the field it came from: `command`, or `args.N`."""
    args = spec.document.get("args", [])
    first_arg = len(argv) - len(args)
    return [("command" if i < first_arg else f"args.{i - first_arg}", word) for i, word in enumerate(argv)]


def _expand(variables: Variables, spec: ServerSpec, field: str, value: str) -> str:
    line = spec.lines.get(tuple(field.split("."))) or spec.lines.get((field.split(".")[0],))
    return variables.expand(value, source=spec.source, line=line, field=field)


def _confined(spec: ServerSpec, directory: Path, cwd: str | None) -> Path:
    """The child's working directory: `cwd` relative to `directory`, never outside it (symlinks resolved)."""
    if cwd is None:
        return directory
    root = directory.resolve()
    path = (directory / cwd).resolve()
    if not path.is_relative_to(root):
        problem = f"cwd: {cwd!r} is outside the definitions folder; a child runs in it or below it"
        raise DefinitionError(spec.source, spec.lines.get(("cwd",)), problem, field="cwd")
    return path


def guarded(argv: list[str]) -> list[str]:
    """`argv` run under the guard, so that it dies with this process; `argv` itself off Linux."""
    if not GUARDED:
        return argv
    return [sys.executable, "-I", "-S", str(GUARD), str(os.getpid()), "--", *argv]


def _check_program(params: StdioServerParameters) -> None:
    """Raise `FileNotFoundError` for a program that is not there, as spawning it directly would:
    the guard itself always starts, so the error would otherwise be only a closed pipe."""
    program = params.command
    if os.sep in program:
        found = os.path.exists(os.path.join(params.cwd or ".", program))
    else:
        found = shutil.which(program, path=(get_default_environment() | (params.env or {})).get("PATH")) is not None
    if not found:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


async def _log_lines(fd: int, name: str, tail: StderrTail) -> None:
    """Copy a child's stderr to the log (and its last lines to `tail`) until it closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb"))
    try:
        while line := await reader.readline():
            tail.add(line)
            logger.info("%s: %s", name, line.decode(errors="replace").rstrip())
    finally:
        transport.close()
