"""A tool's arguments (and structured output) against its JSON Schema: checked once per call by
a `SchemaCheck` built once per tool, and off the event loop when the arguments are large.

`jsonschema` is the reference: it implements JSON Schema 2020-12, the dialect MCP tool schemas
use, and it words the problem a client sees. Checking a small call with it costs ~13 µs, a good
share of a `tools/call`; so a schema written only with keywords that mean the same in draft 7
(`SAME_IN_DRAFT_7`: types, properties, required, enums, bounds, lengths, patterns, plain
`items`, the combinators) is also compiled by `fastjsonschema` into plain Python (~1 µs a
check), which decides validity. `format` stays an annotation, as 2020-12 has it by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import fastjsonschema
import jsonschema

# Keywords with the same meaning in JSON Schema 2020-12 and draft 7 (fastjsonschema's newest).
# Left out on purpose: `$ref`/`$defs` (resolution differs), array-form `items` (tuples became
# `prefixItems`), `dependencies`, `unevaluated*`, `min/maxContains`, and anything unknown.
SAME_IN_DRAFT_7 = frozenset(
    {
        "type", "properties", "required", "enum", "const", "multipleOf", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "items",
        "minItems", "maxItems", "uniqueItems", "contains", "minProperties", "maxProperties",
        "additionalProperties", "patternProperties", "propertyNames", "allOf", "anyOf", "oneOf",
        "not", "if", "then", "else", "format",
        # annotations: no effect on validity
        "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly", "$comment",
    }
)  # fmt: skip
_SUBSCHEMA = frozenset({"items", "contains", "additionalProperties", "propertyNames", "not", "if", "then", "else"})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties"})
DIALECT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


class SchemaCheck:
    """One schema, ready to check instances against (built once, at load time)."""

    def __init__(self, schema: Any) -> None:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        self._reference = cls(schema)
        self._compiled = fastjsonschema.compile(schema, use_formats=False) if portable(schema) else None

    def is_valid(self, instance: Any) -> bool:
        if self._compiled is None:
            return bool(self._reference.is_valid(instance))
        try:
            self._compiled(instance)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    def problem(self, instance: Any) -> tuple[str, str] | None:
        """Where and what is wrong with `instance`, in jsonschema's words; None when it is valid."""
        if self.is_valid(instance):
            return None
        problem = jsonschema.exceptions.best_match(self._reference.iter_errors(instance))
        if problem is None:  # the two disagree: jsonschema, the reference, has the last word
            return None
        return "/".join(str(p) for p in problem.absolute_path), problem.message


def portable(schema: Any, *, root: bool = True) -> bool:
    """Whether `schema` uses only keywords that `SAME_IN_DRAFT_7` lists (so both engines agree)."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, Mapping):
        return False
    for keyword, value in schema.items():
        if keyword == "$schema":
            if not root or value != DIALECT_2020_12:
                return False
            continue
        if keyword not in SAME_IN_DRAFT_7:
            return False
        if keyword in _SUBSCHEMA and not portable(value, root=False):
            return False
        if keyword in _SCHEMA_LISTS and not (
            isinstance(value, list) and all(portable(item, root=False) for item in value)
        ):
            return False
        if keyword in _SCHEMA_MAPS and not (
            isinstance(value, Mapping) and all(portable(item, root=False) for item in value.values())
        ):
            return False
    return True


def problem_with(check: SchemaCheck, arguments: Any) -> str | None:
    """What is wrong with a tool's `arguments`, for the client; None when they are valid."""
    problem = check.problem(arguments)
    if problem is None:
        return None
    where, message = problem
    return f"Invalid arguments{f' at {where}' if where else ''}: {message}"


# Arguments with more values than this are validated on the server's pool, off the event loop.
OFF_LOOP_ELEMENTS = 2_000


def larger_than(value: Any, limit: int) -> bool:
    """Whether `value` holds more than `limit` values; looks at no more than `limit` of them."""
    budget = limit
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        budget -= len(item)
        if budget < 0:
            return True
        for inner in item:  # a plain loop: this runs on every call, mostly over a few scalars
            if isinstance(inner, _CONTAINERS):
                pending.append(inner)
    return False


_CONTAINERS = (dict, list)


def validator_for(schema: Any) -> SchemaCheck:
    """Built once per tool."""
    return SchemaCheck(schema)
