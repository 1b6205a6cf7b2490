"""What the management API may register: decided on the parsed definition, before any import.

A file in `servers.d/` is the operator's and keeps full power. A REST body is an admin
token's, and by default an admin token must not amount to running code on the host, so a
body may name only:

- a `url:` upstream (its `${VAR}` limited to the listed variables, as for every definition);
- an in-process server whose handlers (`module:attr`) live in modules under `servers.d/`: the
  module must resolve to a file inside the folder, which is checked on the file system
  without importing anything, and once it is imported the handler itself must be code from
  that folder (so `helpers:os.getenv`, or a name a helper re-exports from `os`, is refused).

`command:`, `app:` and handlers from anywhere else (`os:getenv`, any installed package) need
`MCP_ADMIN_ALLOW_CODE=true`: an admin token can then run code on this host. A refusal is
`Forbidden` (403) naming the field.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mcp_tornado import definitions as specs
from mcp_tornado.errors import DefinitionError, Forbidden
from mcp_tornado.importer import ImportFromStringError, import_from_string

ALLOW_CODE = "MCP_ADMIN_ALLOW_CODE=true"


def check(spec: specs.ServerSpec, directory: Path) -> None:
    """Refuse (`Forbidden`) what a REST body may not register without `MCP_ADMIN_ALLOW_CODE`.

    Every reference is checked before the first import: a refused body imports nothing. The
    handler modules that pass live in `directory` (the operator's code) and are imported to
    check what each reference names. Raises `DefinitionError` for a module that fails to import.
    """
    if spec.backend in ("command", "app"):
        raise Forbidden(f"{spec.backend}: the management API runs no code unless {ALLOW_CODE}", field=spec.backend)
    root = directory.resolve()
    references = list(handler_references(spec))
    for field, reference in references:
        if module_file(reference.partition(":")[0], root) is None:
            problem = f"{field}: {reference} is not in a module under servers.d/ (needs {ALLOW_CODE})"
            raise Forbidden(problem, field=field)
    for field, reference in references:
        try:
            handler = import_from_string(reference, search_path=directory)
        except ImportFromStringError as exc:
            raise DefinitionError(spec.source, None, f"{field}: {reference}: {exc}", field=field) from None
        if not defined_in(handler, root):
            problem = f"{field}: {reference} is not code from servers.d/ (needs {ALLOW_CODE})"
            raise Forbidden(problem, field=field)


def handler_references(spec: specs.ServerSpec) -> Iterator[tuple[str, str]]:
    """Every `module:attr` an in-process definition names, with its field (`tools.0.handler`)."""
    kinds: tuple[tuple[str, tuple[Any, ...]], ...] = (
        ("tools", spec.tools),
        ("resources", spec.resources),
        ("resource_templates", spec.resource_templates),
        ("prompts", spec.prompts),
    )
    for kind, entries in kinds:
        for i, entry in enumerate(entries):
            if entry.handler:
                yield f"{kind}.{i}.handler", entry.handler


def module_file(module: str, root: Path) -> Path | None:
    """The file inside `root` that module `module` is loaded from, found without importing it.

    The importer loads a top-level name from `root` when `root` has it (a `name.py`, or a
    package `name/__init__.py`); a dotted name is a submodule of such a package. Anything
    else comes from `sys.path`, outside the folder: None. So does a file that is a symlink
    leading out of the folder.
    """
    parts = module.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    top = root / f"{parts[0]}.py"
    package = root / parts[0] / "__init__.py"
    if len(parts) == 1:
        candidates = [top, package]
    elif top.is_file() or not package.is_file():
        return None  # a plain module has no submodules; without the package, the name is not ours
    else:
        candidates = [root.joinpath(*parts[:-1], f"{parts[-1]}.py"), root.joinpath(*parts, "__init__.py")]
    for candidate in candidates:
        if candidate.is_file() and candidate.resolve().is_relative_to(root):
            return candidate
    return None


def defined_in(handler: Any, root: Path) -> bool:
    """Whether `handler` is code written in a file under `root`: a function or method defined
    there, an object whose class's `__call__` is, or a wrapper (`functools.wraps`) of one."""
    try:
        candidates = [handler, inspect.unwrap(handler)]
    except ValueError:  # a __wrapped__ cycle
        candidates = [handler]
    for candidate in candidates:
        code = getattr(getattr(candidate, "__func__", candidate), "__code__", None)
        if code is None:
            code = getattr(inspect.getattr_static(type(candidate), "__call__", None), "__code__", None)
        if code is not None and Path(code.co_filename).resolve().is_relative_to(root):
            return True
    return False
