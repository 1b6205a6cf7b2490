"""Definitions: YAML -> typed specs, and every problem as `file:line: problem` (mcp_tornado/definitions.py)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from mcp_tornado.definitions import (
    DEFAULT_MAX_PROCESSES,
    MAX_DEFINITION_BYTES,
    NAME_PATTERN,
    NAME_RULE,
    CommandSpec,
    PromptArgumentSpec,
    PromptSpec,
    RemoteSpec,
    ResourceSpec,
    ServerSpec,
    ToolSpec,
    from_document,
    load_file,
    parse,
    read_definition,
)
from mcp_tornado.errors import DefinitionError

HEX64 = "0123456789abcdef" * 4


def yaml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def spec_of(text: str, default_name: str = "demo") -> ServerSpec:
    return parse(yaml(text), source="demo.yaml", default_name=default_name)


def problem_of(text: str, default_name: str = "demo") -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        spec_of(text, default_name)
    return caught.value


# -- typed specs ------------------------------------------------------------------------------


def test_an_in_process_definition_becomes_a_server_spec():
    spec = spec_of(
        """
        name: calc
        title: Calculator
        version: 2.1.0
        description: Adds
        instructions: Use add
        api_keys: [plain-key]
        timeout: 5
        tools:
          - name: add
            title: Add
            description: Adds two numbers
            inputSchema: {type: object, properties: {a: {type: number}}}
            outputSchema: {type: object}
            annotations: {readOnlyHint: true}
            handler: calc_tools:add
        """
    )
    assert spec.name == "calc"
    assert spec.source == "demo.yaml"
    assert spec.backend == "inprocess"
    assert (spec.title, spec.version, spec.description, spec.instructions) == ("Calculator", "2.1.0", "Adds", "Use add")
    assert spec.api_keys == ("plain-key",)
    assert spec.timeout == 5.0 and isinstance(spec.timeout, float)
    assert spec.tools == (
        ToolSpec(
            name="add",
            handler="calc_tools:add",
            title="Add",
            description="Adds two numbers",
            input_schema={"type": "object", "properties": {"a": {"type": "number"}}},
            output_schema={"type": "object"},
            annotations={"readOnlyHint": True},
        ),
    )
    assert spec.tools[0].line == 15  # the handler's line: where an import error points
    assert (spec.app, spec.command, spec.remote) == (None, None, None)
    assert spec.document["name"] == "calc"
    assert spec.lines[("tools", 0, "handler")] == 15


def test_the_defaults_of_a_server_spec():
    spec = spec_of("tools: [{name: t, handler: m:f}]\n", default_name="from-stem")
    assert spec.name == "from-stem"
    assert spec.version == "1.0.0"
    assert spec.timeout == 60.0
    assert spec.api_keys == ()
    assert (spec.title, spec.description, spec.instructions) == (None, None, None)
    assert spec.tools[0].input_schema == {"type": "object"}
    assert (spec.tools[0].output_schema, spec.tools[0].annotations, spec.tools[0].title) == (None, None, None)
    assert spec.resources == () and spec.prompts == ()


def test_a_numeric_version_becomes_text():
    assert spec_of("version: 2\n").version == "2"


def test_resources_and_prompts_become_specs():
    spec = spec_of(
        """
        resources:
          - {uri: "docs://a", name: a, title: A, description: the a, mimeType: text/markdown, text: "# A"}
          - uri: docs://b
            name: b
            handler: m:read
        prompts:
          - name: greet
            title: Greet
            description: Says hello
            arguments:
              - {name: who, description: whom, required: true, values: [Ada, Alan]}
              - {name: mood}
            messages:
              - {role: user, text: "Hi {who}"}
              - {role: assistant, text: "Hello"}
          - name: dyn
            handler: m:prompt
        """
    )
    assert spec.resources == (
        ResourceSpec(uri="docs://a", name="a", title="A", description="the a", mime_type="text/markdown", text="# A"),
        ResourceSpec(uri="docs://b", name="b", handler="m:read"),
    )
    assert spec.resources[1].line == 5
    assert spec.prompts == (
        PromptSpec(
            name="greet",
            title="Greet",
            description="Says hello",
            arguments=(
                PromptArgumentSpec(name="who", description="whom", required=True, values=("Ada", "Alan")),
                PromptArgumentSpec(name="mood", description=None, required=False, values=()),
            ),
            messages=(("user", "Hi {who}"), ("assistant", "Hello")),
        ),
        PromptSpec(name="dyn", handler="m:prompt"),
    )
    assert spec.prompts[1].line == 17


def test_an_app_definition():
    spec = spec_of("app: my_app:server\n")
    assert spec.backend == "app"
    assert spec.app == "my_app:server"
    assert spec.command is None and spec.remote is None


def test_a_command_string_is_split_as_a_shell_would():
    spec = spec_of(
        """
        command: "python -m 'my server' --flag"
        args: [--extra, "two words"]
        """
    )
    assert spec.backend == "command"
    assert spec.command == CommandSpec(argv=("python", "-m", "my server", "--flag", "--extra", "two words"))
    assert spec.app is None and spec.remote is None


def test_a_command_list_is_taken_as_it_is_with_args_after_it():
    spec = spec_of(
        """
        command: [python, "my script.py"]
        args: [--a, "1"]
        """
    )
    assert spec.command is not None
    assert spec.command.argv == ("python", "my script.py", "--a", "1")


def test_command_settings_and_their_defaults():
    plain = spec_of("command: run\n").command
    assert plain == CommandSpec(argv=("run",), env={}, cwd=None, lazy=False, per_session=False, max_processes=16)
    assert DEFAULT_MAX_PROCESSES == 16
    spec = spec_of(
        """
        command: run
        env: {A: 1, B: "two", C: 2.5, D: "${HOME}"}
        cwd: /srv
        start: lazy
        per_session: true
        max_processes: 3
        """
    )
    assert spec.command == CommandSpec(
        argv=("run",),
        env={"A": "1", "B": "two", "C": "2.5", "D": "${HOME}"},
        cwd="/srv",
        lazy=True,
        per_session=True,
        max_processes=3,
    )
    assert spec_of("command: run\nstart: eager\n").command == plain


def test_a_boolean_env_value_is_stringified_as_python_writes_it():
    command = spec_of("command: run\nenv: {DEBUG: true}\n").command
    assert command is not None
    assert command.env == {"DEBUG": "True"}  # str(True), not YAML's "true"


def test_a_url_definition():
    spec = spec_of(
        """
        url: https://example.com/mcp
        headers: {Authorization: "Bearer ${TOKEN}"}
        start: lazy
        """
    )
    assert spec.backend == "url"
    assert spec.remote == RemoteSpec(
        url="https://example.com/mcp", headers={"Authorization": "Bearer ${TOKEN}"}, lazy=True
    )
    assert spec.command is None and spec.app is None
    assert spec_of("url: http://x/mcp\n").remote == RemoteSpec(url="http://x/mcp", headers={}, lazy=False)
    assert spec_of("url: http://x/mcp\nstart: eager\n").remote == RemoteSpec(url="http://x/mcp")


# -- problems, with their lines ---------------------------------------------------------------


def test_a_problem_reads_file_line_problem():
    error = problem_of(
        """
        name: demo
        tools:
          - name: a
            handler: m:f
            inputSchema:
              type: array
        """
    )
    assert str(error) == "demo.yaml:5: tools.0.inputSchema: type must be 'object'"
    assert (error.path, error.line, error.field) == ("demo.yaml", 5, "tools.0.inputSchema")
    assert error.problem == "tools.0.inputSchema: type must be 'object'"


def test_an_input_schema_without_a_type_is_refused():
    error = problem_of("tools:\n  - name: a\n    handler: m:f\n    inputSchema: {properties: {}}\n")
    assert str(error) == "demo.yaml:4: tools.0.inputSchema: type must be 'object'"


def test_a_schema_problem_points_at_the_nested_field():
    error = problem_of(
        """
        name: demo
        tools:
          - name: a
            handler: not a reference
        """
    )
    assert error.line == 4
    assert error.field == "tools.0.handler"
    assert str(error).startswith("demo.yaml:4: tools.0.handler: 'not a reference' does not match")


def test_an_unexpected_key_is_pointed_at_itself_not_its_mapping():
    error = problem_of(
        """
        name: demo
        tools:
          - name: a
            handler: m:f
            bogus: 1
        """
    )
    assert str(error) == "demo.yaml:5: tools.0.bogus: Additional properties are not allowed ('bogus' was unexpected)"
    assert error.field == "tools.0.bogus"


def test_an_unexpected_top_level_key():
    error = problem_of("name: demo\ntitle: x\nbogus: 1\n")
    assert error.line == 3
    assert error.field == "bogus"


def test_a_problem_of_the_whole_document_points_at_its_first_line():
    error = problem_of(
        """
        # both kinds at once
        app: m:a
        command: run
        """
    )
    assert error.line == 2
    assert error.field is None
    assert error.problem.startswith("(top level): ")


def test_an_invalid_json_schema_points_at_the_nested_keyword():
    error = problem_of(
        """
        tools:
          - name: a
            handler: m:f
            inputSchema:
              type: object
              properties:
                a:
                  type: 12
        """
    )
    assert error.line == 8
    assert error.field == "tools.0.inputSchema.properties.a.type"
    assert str(error).startswith("demo.yaml:8: tools.0.inputSchema.properties.a.type: not a valid JSON Schema: ")


def test_a_json_schema_that_cannot_even_be_looked_at_points_at_the_schema():
    error = problem_of(
        """
        tools:
          - name: a
            handler: m:f
            inputSchema:
              $schema: [1]
              type: object
        """
    )
    assert str(error) == "demo.yaml:4: tools.0.inputSchema: not a valid JSON Schema: unhashable type: 'list'"
    assert error.field == "tools.0.inputSchema"


def test_a_reference_to_nothing_in_a_schema_is_refused_at_its_line():
    error = problem_of(
        """
        tools:
          - name: a
            handler: m:f
            inputSchema:
              type: object
              $defs: {box: {type: object}}
              properties:
                kept: {$ref: "#/$defs/box"}
                lost: {$ref: "#/$defs/missing"}
        """
    )
    where = "demo.yaml:9: tools.0.inputSchema.properties.lost.$ref"
    assert str(error) == f"{where}: '#/$defs/missing' points at nothing in this schema"


def test_an_output_schema_is_checked_too():
    error = problem_of(
        """
        tools:
          - name: a
            handler: m:f
            outputSchema:
              type: object
              required: 5
        """
    )
    assert str(error) == "demo.yaml:6: tools.0.outputSchema.required: not a valid JSON Schema: 5 is not of type 'array'"


def test_a_duplicate_tool_points_at_the_second_name():
    error = problem_of(
        """
        tools:
          - name: a
            handler: m:f
          - name: b
            handler: m:g
          - name: a
            handler: m:h
        """
    )
    assert str(error) == "demo.yaml:6: tools.2.name: duplicate tool 'a'"
    assert error.field == "tools.2.name"


def test_a_document_that_is_not_a_mapping():
    error = problem_of("- a\n- b\n")
    assert str(error) == "demo.yaml:1: a server definition must be a mapping"
    assert error.field is None


def test_an_empty_file_is_not_a_definition():
    error = problem_of("")
    assert error.problem == "a server definition must be a mapping"
    assert error.line is None


def test_invalid_yaml_points_at_the_construct_left_open():
    error = problem_of("name: x\ntools: [1, 2\n")
    assert error.line == 2
    assert error.problem.startswith("invalid YAML: ")


def test_invalid_yaml_in_the_middle_points_at_the_problem():
    error = problem_of("name: x\ntitle: a\n  bad: indent\nversion: 1\n")
    assert error.line == 3
    assert error.problem.startswith("invalid YAML: ")


def test_a_command_that_does_not_split():
    error = problem_of('name: demo\ncommand: "python \'unterminated"\n')
    assert str(error) == "demo.yaml:2: command: No closing quotation"


@pytest.mark.parametrize("command", ["'   '", "[' ']", "['']"])
def test_a_command_that_names_no_program(command):
    error = problem_of(f"name: demo\ncommand: {command}\n")
    assert str(error) == "demo.yaml:2: command: names no program"


def test_a_document_without_lines_still_names_the_field():
    """A REST body has no lines: the problem is at line 1 and names its field."""
    with pytest.raises(DefinitionError) as caught:
        from_document(
            {"tools": [{"name": "a", "handler": "m:f", "inputSchema": {"type": "string"}}]},
            source="REST",
            default_name="x",
        )
    assert str(caught.value) == "REST:1: tools.0.inputSchema: type must be 'object'"
    assert caught.value.line is None
    assert caught.value.field == "tools.0.inputSchema"


def test_from_document_refuses_what_is_not_a_mapping():
    with pytest.raises(DefinitionError, match="a server definition must be a mapping"):
        from_document(["a"], source="REST", default_name="x")


def test_from_document_gives_the_same_spec_as_parse():
    text = "name: calc\ntools: [{name: add, handler: m:add}]\n"
    parsed = parse(text, source="REST", default_name="x")
    assert (
        from_document({"name": "calc", "tools": [{"name": "add", "handler": "m:add"}]}, source="REST", default_name="x")
        == parsed
    )


# -- the name rule ----------------------------------------------------------------------------


def test_the_name_rule_is_the_schemas():
    assert NAME_RULE == "[A-Za-z0-9][A-Za-z0-9_-]{0,63}"


@pytest.mark.parametrize("name", ["a", "A9", "a" * 64, "a-b_c", "9lives", "x" + "-" * 63])
def test_names_the_rule_accepts(name):
    assert NAME_PATTERN.fullmatch(name)
    assert spec_of(f"name: '{name}'\n").name == name
    assert spec_of("title: t\n", default_name=name).name == name


@pytest.mark.parametrize("name", ["a" * 65, "-a", "_a", "a.b", "a b", "", "é"])
def test_names_the_rule_refuses(name):
    assert not NAME_PATTERN.fullmatch(name)
    error = problem_of("title: t\n", default_name=name)
    assert error.problem == f"name: {name!r} is not a valid server name ({NAME_RULE})"
    assert error.field == "name"
    assert error.line == 1


@pytest.mark.parametrize("name", ["-bad", "a" * 65])
def test_a_bad_name_in_the_file_points_at_its_line(name):
    error = problem_of(f"title: t\nname: '{name}'\n")
    assert error.line == 2
    assert error.field == "name"
    assert error.problem.startswith(f"name: {name!r} does not match ")


# -- auth -------------------------------------------------------------------------------------


def test_a_server_needs_tokens_unless_it_says_auth_none():
    assert spec_of("title: t\n").public is False
    assert spec_of("auth: jwt\n").public is False
    assert spec_of("auth: none\n").public is True


def test_a_public_server_cannot_have_api_keys():
    error = problem_of("auth: none\napi_keys: [k]\n")
    assert error.problem.startswith("(top level): ")


def test_auth_takes_only_jwt_or_none():
    assert problem_of("auth: basic\n").field == "auth"


# -- api keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", [f"sha256:{HEX64}", f"sha256:{HEX64.upper()}", "plain", "sha256", "SHA256:short"])
def test_api_key_entries_accepted(entry):
    assert spec_of(f"api_keys: ['{entry}']\n").api_keys == (entry,)


@pytest.mark.parametrize("entry", [f"sha256:{HEX64[:63]}", f"sha256:{HEX64}0", f"sha256:{'g' * 64}", "sha256:"])
def test_a_sha256_entry_needs_64_hex_digits(entry):
    error = problem_of(f"api_keys:\n  - plain\n  - '{entry}'\n")
    assert str(error) == "demo.yaml:3: api_keys.1: a sha256 entry needs 64 hex digits"
    assert error.field == "api_keys.1"


# -- reading files ----------------------------------------------------------------------------


def test_load_file_names_the_server_after_the_file(tmp_path: Path):
    path = tmp_path / "weather.yaml"
    path.write_text("tools: [{name: t, handler: m:f}]\n")
    spec = load_file(path)
    assert spec.name == "weather"
    assert spec.source == str(path)


def test_load_file_refuses_text_that_is_not_utf8(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"title: \xff\xfe\n")
    with pytest.raises(DefinitionError) as caught:
        load_file(path)
    assert caught.value.problem.startswith("cannot read: ")
    assert caught.value.line is None


def test_read_definition_reads_a_file_of_exactly_the_limit(tmp_path: Path):
    path = tmp_path / "big.yaml"
    content = b"#" * (MAX_DEFINITION_BYTES - 1) + b"\n"
    path.write_bytes(content)
    assert read_definition(path) == content


def test_read_definition_refuses_one_byte_over_the_limit(tmp_path: Path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * MAX_DEFINITION_BYTES + b"\n")
    with pytest.raises(DefinitionError) as caught:
        read_definition(path)
    assert str(caught.value) == f"{path}:1: larger than {MAX_DEFINITION_BYTES} bytes"
    assert MAX_DEFINITION_BYTES == 1024 * 1024


def test_read_definition_refuses_a_fifo_without_blocking(tmp_path: Path):
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    with pytest.raises(DefinitionError) as caught:
        read_definition(path)
    assert str(caught.value) == f"{path}:1: not a regular file"


def test_read_definition_refuses_a_directory(tmp_path: Path):
    path = tmp_path / "dir.yaml"
    path.mkdir()
    with pytest.raises(DefinitionError, match="not a regular file"):
        read_definition(path)


def test_read_definition_of_a_missing_file(tmp_path: Path):
    with pytest.raises(DefinitionError) as caught:
        read_definition(tmp_path / "missing.yaml")
    assert caught.value.problem.startswith("cannot read: ")
    assert caught.value.line is None
