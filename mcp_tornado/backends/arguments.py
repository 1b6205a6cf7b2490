"""A tool's arguments against its `inputSchema`: the validator built once per tool, and the
check that runs off the event loop when the arguments are large."""

from __future__ import annotations

from typing import Any

import jsonschema


def problem_with(validator: jsonschema.protocols.Validator, arguments: Any) -> str | None:
    """What is wrong with `arguments`, for the client; None when they are valid."""
    if validator.is_valid(arguments):
        return None
    problem = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    assert problem is not None
    where = "/".join(str(p) for p in problem.absolute_path)
    return f"Invalid arguments{f' at {where}' if where else ''}: {problem.message}"


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
        pending.extend(v for v in item if isinstance(v, dict | list))
    return False


def validator_for(schema: Any) -> jsonschema.protocols.Validator:
    """Built once per tool. `format` stays an annotation, as JSON Schema 2020-12 has it by default."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)
