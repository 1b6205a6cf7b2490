"""Resolve `module:attribute` references, with errors that say what failed and where."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


class ImportFromStringError(ValueError):
    pass


def import_from_string(reference: str, *, search_path: Path | None = None) -> Any:
    """Import `module:attr` (attr may be dotted).

    With `search_path` (the servers folder), a module that lives there is loaded from there,
    whatever else is on `sys.path` or was imported before under that name; the folder is added
    at the *end* of `sys.path` so its modules can import each other without ever shadowing a
    module the gateway itself uses. Raises `ImportFromStringError` naming what failed.
    """
    module_name, sep, attrs = reference.partition(":")
    if not sep or not module_name or not attrs:
        raise ImportFromStringError(f"{reference!r} is not of the form 'module:attribute'")
    try:
        if search_path is not None:
            _load_local(module_name.partition(".")[0], search_path.resolve())
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ImportFromStringError(f"module {module_name!r} not found") from None
        raise ImportFromStringError(f"importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:  # the module itself raised: report it, never crash the loader
        raise ImportFromStringError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    value: Any = module
    for attr in attrs.split("."):
        try:
            value = getattr(value, attr)
        except AttributeError:
            raise ImportFromStringError(f"module {module_name!r} has no attribute {attrs!r}") from None
    return value


def _load_local(top: str, directory: Path) -> None:
    """Put `directory`'s module `top` (a file or a package) into `sys.modules`, if it has one."""
    if str(directory) not in sys.path:
        sys.path.append(str(directory))
    file = directory / f"{top}.py"
    package = directory / top / "__init__.py"
    origin = file if file.is_file() else package if package.is_file() else None
    if origin is None:
        return
    cached = sys.modules.get(top)
    if cached is not None and getattr(cached, "__file__", None) == str(origin):
        return
    for name in [n for n in sys.modules if n == top or n.startswith(f"{top}.")]:
        del sys.modules[name]  # an older module of that name, from elsewhere
    locations = [str(package.parent)] if origin == package else None
    spec = importlib.util.spec_from_file_location(top, origin, submodule_search_locations=locations)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[top] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[top]
        raise
