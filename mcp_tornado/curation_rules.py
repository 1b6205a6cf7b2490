"""What a definition says to serve of a backend's lists: the `tools:`, `prompts:` and
`resources:` mappings (include, exclude, rename, override), parsed, checked and compiled.

Every rule names things as the backend lists them (a tool's or prompt's own name, a
resource's URI); the client sees the renamed, overridden result. Patterns are shell globs
(`fnmatch`, case-sensitive), compiled once into one regular expression per list. A name is
shown when it matches an `include` pattern (or there is none) and no `exclude` pattern.

`parse()` refuses, as `file:line: problem`, what can never be served as written: a rename
onto a name that is served already, two renames onto one name, a rename of a name the
patterns leave out, and (when the names are known) a rename or override of a name that does
not exist. An override of a name left out is kept, unused.
The rules are applied by `mcp_tornado.backends.curation` (any backend's lowlevel server and
the 2026-07-28 relay), and to an in-process server's own tools at load.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar

# Mapping keys of each curated list; `define` holds an in-process server's own entries.
KINDS = ("tools", "prompts", "resources")
_GLOB = re.compile(r"[*?\[]")

T = TypeVar("T")


def _compiled(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in patterns), re.DOTALL)


@dataclasses.dataclass(frozen=True)
class ListRules:
    """One list's curation (`tools:`, `prompts:` or `resources:`), by the backend's names."""

    include: tuple[str, ...] = ()  # empty: everything the backend lists
    exclude: tuple[str, ...] = ()
    rename: Mapping[str, str] = dataclasses.field(default_factory=dict)  # backend's name -> served name
    override: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)  # backend's name -> fields
    _included: re.Pattern[str] | None = dataclasses.field(default=None, init=False, repr=False, compare=False)
    _excluded: re.Pattern[str] | None = dataclasses.field(default=None, init=False, repr=False, compare=False)
    # Served name -> backend's name, for the renames.
    _renamed_from: Mapping[str, str] = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_included", _compiled(self.include))
        object.__setattr__(self, "_excluded", _compiled(self.exclude))
        object.__setattr__(self, "_renamed_from", {new: old for old, new in self.rename.items()})

    @property
    def active(self) -> bool:
        return bool(self.include or self.exclude or self.rename or self.override)

    def matches(self, name: str) -> bool:
        """Whether the patterns let `name` (as the backend lists it) through."""
        if self._included is not None and not self._included.fullmatch(name):
            return False
        return self._excluded is None or not self._excluded.fullmatch(name)

    def served_name(self, name: str) -> str | None:
        """What the client sees of the backend's `name`; None when it is hidden. A rename's
        target shadows a backend entry of the same name."""
        renamed = self.rename.get(name)
        if renamed is not None:
            return renamed
        if name in self._renamed_from or not self.matches(name):
            return None
        return name

    def backend_name(self, served: str) -> str | None:
        """The backend's name for what a client asks by `served`; None when it may not be asked
        for (left out by the patterns, or renamed away)."""
        original = self._renamed_from.get(served)
        if original is not None:
            return original
        if served in self.rename or not self.matches(served):
            return None
        return served

    def select(self, entries: Iterable[T], name_of: Callable[[T], str]) -> list[tuple[T, str, Mapping[str, Any]]]:
        """The entries shown, each with its served name and its overrides (an in-process
        server's own definitions, curated once at load)."""
        chosen = []
        for entry in entries:
            name = name_of(entry)
            served = self.served_name(name)
            if served is not None:
                chosen.append((entry, served, self.override.get(name, {})))
        return chosen


@dataclasses.dataclass(frozen=True)
class Curation:
    tools: ListRules = ListRules()
    prompts: ListRules = ListRules()
    resources: ListRules = ListRules()  # include/exclude on URIs (and templates' uriTemplate)

    @property
    def active(self) -> bool:
        return self.tools.active or self.prompts.active or self.resources.active


NONE = Curation()

Fail = Callable[[tuple[str | int, ...], str], Exception]


def parse(document: Mapping[str, Any], fail: Fail, known: Mapping[str, Collection[str]] | None = None) -> Curation:
    """The curation of a schema-valid document (the mapping forms of `tools`, `prompts`,
    `resources`). `known`: each kind's names when the definition itself lists them (an
    in-process server), so renames and overrides are checked against them too.
    Raises what `fail(path, problem)` makes."""
    lists = {}
    for kind in KINDS:
        raw = document.get(kind)
        if not isinstance(raw, Mapping):
            continue
        rules = ListRules(
            include=tuple(raw.get("include", ())),
            exclude=tuple(raw.get("exclude", ())),
            rename=dict(raw.get("rename", {})),
            override={name: dict(fields) for name, fields in raw.get("override", {}).items()},
        )
        _check(kind, rules, fail, None if known is None else known.get(kind))
        lists[kind] = rules
    return Curation(**lists) if lists else NONE


def _check(kind: str, rules: ListRules, fail: Fail, names: Collection[str] | None) -> None:
    what = kind.removesuffix("s")
    onto: dict[str, str] = {}
    for original, served in rules.rename.items():
        where = (kind, "rename", original)
        field = f"{kind}.rename.{original}"
        if names is not None and original not in names:
            raise fail(where, f"{field}: no {what} {original!r} to rename")
        if not rules.matches(original):
            raise fail(where, f"{field}: renames a {what} that include/exclude leave out")
        if served in onto:
            raise fail(where, f"{field}: renames onto {served!r}, as {kind}.rename.{onto[served]} does")
        onto[served] = original
        kept_by_backend = names is not None and served in names and rules.matches(served)
        named_by_include = served in rules.include and not _GLOB.search(served)
        if served not in rules.rename and (kept_by_backend or named_by_include):
            raise fail(where, f"{field}: renames onto {served!r}, a {what} that is served already")
    for original in rules.override:
        where = (kind, "override", original)
        field = f"{kind}.override.{original}"
        if names is not None and original not in names:
            raise fail(where, f"{field}: no {what} {original!r} to override")
