"""`SchemaCheck`: fastjsonschema decides validity only where it agrees with jsonschema (the
reference, JSON Schema 2020-12); hypothesis throws values at both to show they agree."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_tornado.backends.arguments import SchemaCheck, larger_than, portable, problem_with

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12,
)
OBJECTS = st.dictionaries(st.sampled_from(["a", "b", "operation", "tags", "x"]), JSON, max_size=5)

PORTABLE = [
    {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "integer"}}, "required": ["a"]},
    {"type": "object", "properties": {"operation": {"type": "string", "enum": ["add", "sub"]}}},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}},
    {"type": "object", "additionalProperties": False, "properties": {"a": {"type": ["string", "null"]}}},
    {"type": "object", "properties": {"a": {"anyOf": [{"type": "string", "maxLength": 3}, {"minimum": 0}]}}},
    {"type": "object", "properties": {"x": {"exclusiveMinimum": 0, "exclusiveMaximum": 10, "multipleOf": 0.5}}},
    {"type": "object", "properties": {"a": {"const": [1, 2]}}, "minProperties": 1, "maxProperties": 3},
    {"type": "object", "properties": {"a": {"pattern": "^[a-z]+$", "format": "email"}}},
    {"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}, "else": {"not": {"required": ["x"]}}},
    {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"},
]
NOT_PORTABLE = [
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}, "$defs": {"n": {"type": "number"}}},
    {"type": "object", "properties": {"a": {"type": "array", "items": [{"type": "string"}]}}},
    {"type": "object", "properties": {"a": {"type": "array", "prefixItems": [{"type": "string"}]}}},
    {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
    {"type": "object", "dependentRequired": {"a": ["b"]}},
]


def _valid(schema: dict[str, Any]) -> bool:
    """Definitions refuse a schema that is not valid in its dialect (array-form `items` in 2020-12)."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return not list(cls(cls.META_SCHEMA).iter_errors(schema))


@pytest.mark.parametrize("schema", PORTABLE)
def test_portable_schemas_are_compiled(schema: dict[str, Any]) -> None:
    assert portable(schema)


@pytest.mark.parametrize("schema", NOT_PORTABLE)
def test_other_schemas_are_left_to_jsonschema(schema: dict[str, Any]) -> None:
    assert not portable(schema)


@pytest.mark.parametrize("schema", PORTABLE + [s for s in NOT_PORTABLE if _valid(s)])
@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(instance=OBJECTS | JSON)
def test_the_fast_check_agrees_with_the_reference(schema: dict[str, Any], instance: Any) -> None:
    reference = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)(schema)
    assert SchemaCheck(schema).is_valid(instance) == reference.is_valid(instance)


def test_a_problem_is_worded_by_jsonschema_with_where_it_is() -> None:
    check = SchemaCheck(PORTABLE[0])
    assert problem_with(check, {"a": 1, "b": 2}) is None
    assert problem_with(check, {"a": "x"}) == "Invalid arguments at a: 'x' is not of type 'number'"
    assert problem_with(check, {}) == "Invalid arguments: 'a' is a required property"


def test_large_arguments_are_told_apart_by_counting_no_further_than_the_limit() -> None:
    assert not larger_than({"a": list(range(10))}, 11)
    assert larger_than({"a": list(range(10))}, 10)
    assert larger_than({"a": [[1, 2], [3, 4]]}, 5)
    assert not larger_than("a string is one value", 0)


def test_format_is_an_annotation_as_2020_12_says() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "format": "email"}}}
    assert portable(schema)
    assert SchemaCheck(schema).is_valid({"a": "not an email"})
