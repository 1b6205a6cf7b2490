"""Curation in definitions: the `tools:`/`prompts:`/`resources:` mappings, what they serve, and
every mistake refused at load as `file:line: problem` (mcp_tornado/curation_rules.py)."""

from __future__ import annotations

import textwrap

import pytest

from mcp_tornado.curation_rules import ListRules
from mcp_tornado.definitions import ServerSpec, parse
from mcp_tornado.errors import DefinitionError

CHILD = "command: [python, child.py]\n"


def spec_of(text: str) -> ServerSpec:
    return parse(textwrap.dedent(text).lstrip("\n"), source="demo.yaml", default_name="demo")


def problem_of(text: str) -> str:
    with pytest.raises(DefinitionError) as caught:
        spec_of(text)
    return str(caught.value)


# -- what is served -------------------------------------------------------------------------


def test_an_upstreams_curation_is_kept_for_its_backend():
    spec = spec_of(
        """
        command: [python, child.py]
        tools:
          include: ["get_*", search]
          exclude: ["*_secret"]
          rename: {search: find}
          override: {get_user: {description: A user, annotations: {readOnlyHint: true}}}
        prompts: {exclude: [draft]}
        resources: {include: ["docs://*"]}
        """
    )
    tools = spec.curation.tools
    assert [tools.served_name(n) for n in ("get_user", "get_secret", "search", "delete", "find")] == [
        "get_user",
        None,
        "find",
        None,
        None,  # "find" is the renamed search: an upstream tool of that name is shadowed
    ]
    assert [tools.backend_name(n) for n in ("find", "search", "get_user", "get_secret")] == [
        "search",
        None,
        "get_user",
        None,
    ]
    assert spec.curation.prompts.served_name("draft") is None
    assert spec.curation.resources.matches("docs://a/b") and not spec.curation.resources.matches("file:///etc")
    assert spec.tools == ()


def test_an_in_process_server_is_curated_at_load():
    spec = spec_of(
        """
        tools:
          define:
            - {name: echo, description: Echo, handler: tools:echo}
            - {name: boom, handler: tools:boom, scopes: [danger]}
            - {name: whoami, handler: tools:whoami, annotations: {idempotentHint: true}}
          exclude: [boom]
          rename: {echo: repeat}
          override: {whoami: {title: Caller, annotations: {readOnlyHint: true}}}
        tool_scopes: {repeat: [talk]}
        prompts:
          define:
            - {name: greet, messages: [{role: user, text: hi}]}
            - {name: draft, messages: [{role: user, text: wip}]}
          include: [greet]
          rename: {greet: hello}
        resources:
          define:
            - {uri: "docs://a", name: a, text: A}
            - {uri: "secret://b", name: b, text: B}
          exclude: ["secret://*"]
        resource_templates:
          - {uriTemplate: "secret://{id}", name: s, handler: tools:read}
        """
    )
    assert [(t.name, t.handler) for t in spec.tools] == [("repeat", "tools:echo"), ("whoami", "tools:whoami")]
    assert spec.tools[1].title == "Caller"
    assert spec.tools[1].annotations == {"idempotentHint": True, "readOnlyHint": True}
    assert spec.tool_scopes == {"repeat": ("talk",)}  # by the names clients call; boom is gone
    assert [p.name for p in spec.prompts] == ["hello"]
    assert [r.uri for r in spec.resources] == ["docs://a"]
    assert spec.resource_templates == ()
    assert not spec.curation.active  # applied already: nothing left for the backend to do


def test_renames_may_swap_names():
    spec = spec_of(CHILD + "tools: {rename: {a: b, b: a}}\n")
    assert (spec.curation.tools.served_name("a"), spec.curation.tools.backend_name("a")) == ("b", "b")


def test_patterns_are_case_sensitive_globs():
    rules = ListRules(include=("get_*", "item[0-9]"), exclude=("*?secret",))
    assert [rules.matches(n) for n in ("get_x", "GET_x", "item7", "itemA", "get_topsecret")] == [
        True,
        False,
        True,
        False,
        False,
    ]


# -- refused at load --------------------------------------------------------------------------


def test_a_rename_onto_a_tool_the_server_has_is_refused():
    assert (
        problem_of(
            """
            tools:
              define:
                - {name: a, handler: t:a}
                - {name: b, handler: t:b}
              rename:
                a: b
            """
        )
        == "demo.yaml:6: tools.rename.a: renames onto 'b', a tool that is served already"
    )


def test_a_rename_onto_a_name_include_lists_is_refused():
    problem = problem_of(CHILD + "tools:\n  include: [a, b]\n  rename:\n    a: b\n")
    assert problem == "demo.yaml:5: tools.rename.a: renames onto 'b', a tool that is served already"


def test_two_renames_onto_one_name_are_refused():
    problem = problem_of(CHILD + "prompts:\n  rename:\n    a: x\n    b: x\n")
    assert problem == "demo.yaml:5: prompts.rename.b: renames onto 'x', as prompts.rename.a does"


def test_a_rename_of_a_name_left_out_is_refused():
    problem = problem_of(CHILD + "tools:\n  exclude: ['admin_*']\n  rename:\n    admin_drop: drop\n")
    assert problem == "demo.yaml:5: tools.rename.admin_drop: renames a tool that include/exclude leave out"


def test_renames_and_overrides_of_unknown_in_process_tools_are_refused():
    text = "tools:\n  define:\n    - {name: a, handler: t:a}\n  %s:\n    zz: %s\n"
    assert problem_of(text % ("rename", "y")) == "demo.yaml:5: tools.rename.zz: no tool 'zz' to rename"
    assert problem_of(text % ("override", "{title: Z}")) == "demo.yaml:5: tools.override.zz: no tool 'zz' to override"


@pytest.mark.parametrize(
    ("curation", "line", "field"),
    [
        ("tools: {include: 'get_*'}", 2, "tools.include"),  # a pattern list, not one string
        ("tools: {exclude: [3]}", 2, "tools.exclude.0"),
        ("tools: {rename: {a: 'has space'}}", 2, "tools.rename.a"),
        ("tools: {override: {a: {name: b}}}", 2, "tools.override.a.name"),
        ("tools: {hide: [a]}", 2, "tools.hide"),
        ("resources: {rename: {a: b}}", 2, "resources.rename"),
        ("tools: {define: [{name: a, handler: 't:a'}]}", 2, "tools.define"),  # only in-process servers define
    ],
)
def test_malformed_curation_is_refused_at_its_line(curation, line, field):
    problem = problem_of(CHILD + curation + "\n")
    assert problem.startswith(f"demo.yaml:{line}: {field}"), problem
