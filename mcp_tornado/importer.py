"""Resolve `module:attribute` references, with errors that say what failed and where."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any


class ImportFromStringError(ValueError):
    pass


def import_from_string(reference: str, *, search_path: Path | None = None) -> Any:
    """Import `module:attr` (attr may be dotted). `search_path` is put on `sys.path` first.

    Raises `ImportFromStringError` naming the module or attribute that could not be found,
    or the exception the module raised while importing.
    """
    module_name, sep, attrs = reference.partition(":")
    if not sep or not module_name or not attrs:
        raise ImportFromStringError(f"{reference!r} is not of the form 'module:attribute'")
    if search_path is not None:
        entry = str(search_path.resolve())
        if sys.path[:1] != [entry]:
            if entry in sys.path:
                sys.path.remove(entry)
            sys.path.insert(0, entry)
        _forget_if_elsewhere(module_name, Path(entry))
    try:
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


def _forget_if_elsewhere(module_name: str, directory: Path) -> None:
    """Drop a cached module that was loaded from another folder than the one now asked for.

    Two servers folders (or a folder moved) may hold modules of the same name; the one in
    `directory` must win, not whichever was imported first.
    """
    top = module_name.partition(".")[0]
    cached = sys.modules.get(top)
    origin = getattr(cached, "__file__", None)
    if cached is None or origin is None:
        return
    local = (directory / f"{top}.py").exists() or (directory / top / "__init__.py").exists()
    if local and not Path(origin).resolve().is_relative_to(directory):
        for name in [n for n in sys.modules if n == top or n.startswith(f"{top}.")]:
            del sys.modules[name]
