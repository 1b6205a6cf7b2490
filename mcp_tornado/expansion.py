"""`${VAR}` in definitions: taken from the operator's environment, and only from the variables
the operator lists (`MCP_EXPAND_VARS`).

The grammar is small on purpose: `${NAME}` is a reference, `$$` is one literal `$`, and any
other `$` (a bare `$HOME` included) stays as written. A `${` that does not open a well-formed
reference is a problem rather than a guess. The gateway's own secrets never leave through a
definition: `JWT_*` variables and the gateway's `MCP_*` settings are never expanded, even when
listed. Every refusal is a `DefinitionError` naming the field and the variable, never the value.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping

from mcp_tornado.errors import DefinitionError
from mcp_tornado.settings import _ENVIRONMENT

# `$$`, then `${NAME}`, then a `${` that is neither (unterminated, or not a name).
_REFERENCE = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bad>\{))")
# The gateway's own settings: secrets (JWT_SECRET, JWT_PREVIOUS_SECRETS) and what it runs with.
_SETTINGS = frozenset(var for var, _, _ in _ENVIRONMENT if var.startswith("MCP_"))


def protected(name: str) -> bool:
    """Whether `name` is the gateway's own (a `JWT_*` variable or an `MCP_*` setting): never expanded."""
    return name.startswith("JWT_") or name in _SETTINGS


@dataclasses.dataclass(frozen=True)
class Variables:
    """The environment a definition's `${VAR}` may read: `environ`, limited to `allowed` names."""

    environ: Mapping[str, str]
    allowed: Collection[str] = ()

    def expand(self, value: str, *, source: str, line: int | None, field: str) -> str:
        """`value` with its references replaced. Raises `DefinitionError` (`source:line: field: ...`)."""

        def replace(match: re.Match[str]) -> str:
            if match["dollar"]:
                return "$"
            name = match["name"]
            if name is None:
                problem = f"{field}: '${{' must open a ${{NAME}} reference (write '$${{' for a literal '${{')"
            elif protected(name):
                problem = f"{field}: ${{{name}}} is one of the gateway's own settings and is never expanded"
            elif name not in self.allowed:
                problem = f"{field}: ${{{name}}} is not listed in MCP_EXPAND_VARS"
            elif name not in self.environ:
                problem = f"{field}: ${{{name}}} is not set in the environment"
            else:
                return self.environ[name]
            raise DefinitionError(source, line, problem, field=field)

        return _REFERENCE.sub(replace, value)
