"""A hosted server's definition: YAML (or a REST body) -> a validated, frozen `ServerSpec`.

Parsing keeps the line of every node, so each problem is reported as `file:line: problem`.
The JSON Schema in `mcp_tornado/schema/server.schema.json` is the single description of the
format (the server name rule included); this module only adds what a schema cannot say (valid
tool schemas, key digests, a command line that splits) and types every backend's settings:
`CommandSpec` for `command:`, `RemoteSpec` for `url:`, `MemberSpec` for `compose:`, `app` for `app:`, the tools,
resources and prompts for an in-process server.

Long because the format is one thing: every part of it is typed and checked here, and
splitting the dataclasses from their parsing would only scatter that one description.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import stat
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.exceptions
import referencing.jsonschema
import yaml
from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate

from mcp_tornado import curation_rules
from mcp_tornado.curation_rules import Curation
from mcp_tornado.errors import DefinitionError

_SHA256_ENTRY = re.compile(r"^sha256:[0-9a-fA-F]{64}$")
# A definition is a few KB of YAML; anything past this is a mistake or an attack on memory.
MAX_DEFINITION_BYTES = 1024 * 1024

SCHEMA: dict[str, Any] = json.loads(
    resources.files("mcp_tornado").joinpath("schema/server.schema.json").read_text(encoding="utf-8")
)
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
# The one server name rule: the schema's, also used for routes and the management API.
NAME_RULE: str = SCHEMA["$defs"]["serverName"]["pattern"].removeprefix("^").removesuffix("$")
NAME_PATTERN = re.compile(NAME_RULE)  # use with fullmatch
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_PROCESSES = 16

Path_ = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    name: str
    handler: str
    title: str | None = None
    description: str | None = None
    input_schema: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"type": "object"})
    output_schema: Mapping[str, Any] | None = None
    annotations: Mapping[str, Any] | None = None
    scopes: tuple[str, ...] = ()  # a token needs all of them to see and call the tool
    line: int | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class ResourceSpec:
    uri: str
    name: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    text: str | None = None
    handler: str | None = None
    line: int | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class ResourceTemplateSpec:
    """Resources named by a URI template (RFC 6570); `handler(variables, context)` reads one."""

    uri_template: str
    name: str
    handler: str
    title: str | None = None
    description: str | None = None
    mime_type: str | None = None
    line: int | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class PromptArgumentSpec:
    name: str
    description: str | None = None
    required: bool = False
    values: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PromptSpec:
    name: str
    title: str | None = None
    description: str | None = None
    arguments: tuple[PromptArgumentSpec, ...] = ()
    messages: tuple[tuple[str, str], ...] = ()
    handler: str | None = None
    line: int | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class CommandSpec:
    """`command:` a stdio server run as a child. `argv` and `env` are as written: `${VAR}`
    references are expanded against the environment when the backend is built."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    cwd: str | None = None
    lazy: bool = False
    per_session: bool = False
    max_processes: int = DEFAULT_MAX_PROCESSES


@dataclasses.dataclass(frozen=True)
class RemoteSpec:
    """`url:` a remote Streamable HTTP server, proxied; `headers` as written (`${VAR}` unexpanded)."""

    url: str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    lazy: bool = False


@dataclasses.dataclass(frozen=True)
class MemberSpec:
    """One member of a `compose:` server: a hosted server by route name, and the prefix its tool
    and prompt names get on the composed route (`{prefix}{separator}{name}`; "" for none)."""

    server: str
    prefix: str
    line: int | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class RateLimitSpec:
    """`rate_limit:` a server's own limits (requests a second, burst); None: the gateway's setting."""

    per_identity: float | None = None
    per_address: float | None = None
    burst: int | None = None


@dataclasses.dataclass(frozen=True)
class ServerSpec:
    """Everything a file says about one hosted server; `source` is the file (or `REST`)."""

    name: str
    source: str
    backend: str  # "inprocess" | "app" | "command" | "url"
    title: str | None = None
    version: str = "1.0.0"
    description: str | None = None
    instructions: str | None = None
    api_keys: tuple[str, ...] = ()
    timeout: float = 60.0
    public: bool = False  # `auth: none`: no token needed
    scopes: tuple[str, ...] = ()  # a token needs all of them to open or use the server
    # Tool name -> scopes a token needs to see and call it: `tool_scopes:` merged with each
    # in-process tool's own `scopes:`.
    tool_scopes: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    rate_limit: RateLimitSpec = RateLimitSpec()
    tools: tuple[ToolSpec, ...] = ()
    resources: tuple[ResourceSpec, ...] = ()
    resource_templates: tuple[ResourceTemplateSpec, ...] = ()
    prompts: tuple[PromptSpec, ...] = ()
    app: str | None = None
    command: CommandSpec | None = None
    remote: RemoteSpec | None = None
    compose: tuple[MemberSpec, ...] = ()  # `compose:` the members, in order (the first wins a collision)
    # What the backend lists is curated by (`tools:`/`prompts:`/`resources:` mappings); an
    # in-process server's own entries are curated here, at load, and this stays empty.
    curation: Curation = curation_rules.NONE
    separator: str = "_"  # between a member's prefix and its tool or prompt names
    document: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    lines: Mapping[Path_, int] = dataclasses.field(default_factory=dict, compare=False, repr=False)


def read_definition(path: Path) -> bytes:
    """A definition file's bytes, read without ever blocking. Raises `DefinitionError`.

    Only a regular file of at most `MAX_DEFINITION_BYTES` is read: a FIFO (or a device) named
    `x.yaml` would block a plain read forever, so it is opened non-blocking, looked at with
    `fstat`, and refused unread (`not a regular file`).
    """
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise DefinitionError(source, None, f"cannot read: {exc}") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise DefinitionError(source, 1, "not a regular file")
        too_large = DefinitionError(source, 1, f"larger than {MAX_DEFINITION_BYTES} bytes")
        if status.st_size > MAX_DEFINITION_BYTES:
            raise too_large
        chunks, size = [], 0
        while chunk := os.read(fd, MAX_DEFINITION_BYTES + 1 - size):  # the file may grow after fstat
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_DEFINITION_BYTES:
                raise too_large
        return b"".join(chunks)
    except OSError as exc:
        raise DefinitionError(source, None, f"cannot read: {exc}") from None
    finally:
        os.close(fd)


def load_file(path: Path) -> ServerSpec:
    """Read and validate one definition file. Raises `DefinitionError` (`file:line: problem`)."""
    try:
        text = read_definition(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(str(path), None, f"cannot read: {exc}") from None
    return parse(text, source=str(path), default_name=path.stem)


def parse(text: str, *, source: str, default_name: str) -> ServerSpec:
    document, lines = _load_yaml(text, source)
    return from_document(document, source=source, default_name=default_name, lines=lines)


def from_document(
    document: Any, *, source: str, default_name: str, lines: Mapping[Path_, int] | None = None
) -> ServerSpec:
    """Validate an already-parsed document (a YAML file's content or a REST body)."""
    lines = lines or {}

    def fail(path: Path_, problem: str) -> DefinitionError:
        return DefinitionError(source, _line_of(lines, path), problem, field=".".join(map(str, path)) or None)

    if not isinstance(document, dict):
        raise fail((), "a server definition must be a mapping")
    errors = sorted(_VALIDATOR.iter_errors(document), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        where = tuple(best.absolute_path)
        if best.validator == "additionalProperties" and isinstance(best.instance, dict):
            # Point at the first unexpected key rather than at the mapping that holds it.
            allowed = set(best.schema.get("properties", {}))
            extra = next((k for k in best.instance if k not in allowed), None)
            if extra is not None:
                where = (*where, extra)
        field = ".".join(str(p) for p in where) or "(top level)"
        raise fail(where, f"{field}: {best.message}")
    name = document.get("name", default_name)
    if not NAME_PATTERN.fullmatch(str(name)):
        raise fail(("name",), f"name: {name!r} is not a valid server name ({NAME_RULE})")
    for i, entry in enumerate(document.get("api_keys", [])):
        if entry.startswith("sha256:") and not _SHA256_ENTRY.match(entry):
            raise fail(("api_keys", i), f"api_keys.{i}: a sha256 entry needs 64 hex digits")
    tools = []
    seen: set[str] = set()
    at, raws = _defined(document, "tools")  # a list, or a curation mapping's `define:` list
    for i, raw in enumerate(raws):
        if raw["name"] in seen:
            raise fail((*at, i, "name"), f"{_dotted(at)}.{i}.name: duplicate tool {raw['name']!r}")
        seen.add(raw["name"])
        for key in ("inputSchema", "outputSchema"):
            if key in raw:
                _check_json_schema(raw[key], fail, (*at, i, key))
        input_schema = raw.get("inputSchema", {"type": "object"})
        if input_schema.get("type") != "object":
            raise fail((*at, i, "inputSchema"), f"{_dotted(at)}.{i}.inputSchema: type must be 'object'")
        tools.append(
            ToolSpec(
                name=raw["name"],
                handler=raw["handler"],
                title=raw.get("title"),
                description=raw.get("description"),
                input_schema=input_schema,
                output_schema=raw.get("outputSchema"),
                annotations=raw.get("annotations"),
                scopes=tuple(raw.get("scopes", ())),
                line=_line_of(lines, (*at, i, "handler")),
            )
        )
    resources_ = tuple(
        ResourceSpec(
            uri=raw["uri"],
            name=raw["name"],
            title=raw.get("title"),
            description=raw.get("description"),
            mime_type=raw.get("mimeType"),
            text=raw.get("text"),
            handler=raw.get("handler"),
            line=_line_of(lines, (*_defined(document, "resources")[0], i, "handler")),
        )
        for i, raw in enumerate(_defined(document, "resources")[1])
    )
    templates = []
    for i, raw in enumerate(document.get("resource_templates", [])):
        try:
            UriTemplate.parse(raw["uriTemplate"])
        except InvalidUriTemplate as exc:
            raise fail(("resource_templates", i, "uriTemplate"), f"resource_templates.{i}.uriTemplate: {exc}") from None
        templates.append(
            ResourceTemplateSpec(
                uri_template=raw["uriTemplate"],
                name=raw["name"],
                handler=raw["handler"],
                title=raw.get("title"),
                description=raw.get("description"),
                mime_type=raw.get("mimeType"),
                line=_line_of(lines, ("resource_templates", i, "handler")),
            )
        )
    prompts = tuple(
        PromptSpec(
            name=raw["name"],
            title=raw.get("title"),
            description=raw.get("description"),
            arguments=tuple(
                PromptArgumentSpec(
                    name=a["name"],
                    description=a.get("description"),
                    required=bool(a.get("required", False)),
                    values=tuple(a.get("values", ())),
                )
                for a in raw.get("arguments", [])
            ),
            messages=tuple((m["role"], m["text"]) for m in raw.get("messages", [])),
            handler=raw.get("handler"),
            line=_line_of(lines, (*_defined(document, "prompts")[0], i, "handler")),
        )
        for i, raw in enumerate(_defined(document, "prompts")[1])
    )
    in_process = not _BACKEND_KEYS & document.keys()
    known = {"tools": seen, "prompts": [p.name for p in prompts]} if in_process else None
    curation = curation_rules.parse(document, fail, known)
    if in_process:  # its own entries, curated once, here
        tools, prompts, resources_, templates = _curated(curation, tools, prompts, resources_, templates)
        seen, curation = {t.name for t in tools}, curation_rules.NONE
    tool_scopes: dict[str, tuple[str, ...]] = {
        str(tool): tuple(needed) for tool, needed in document.get("tool_scopes", {}).items()
    }
    if tools and (unknown := next((t for t in tool_scopes if t not in seen), None)) is not None:
        raise fail(("tool_scopes", unknown), f"tool_scopes.{unknown}: no tool {unknown!r} in tools")
    for tool_spec in tools:
        if tool_spec.scopes:
            tool_scopes[tool_spec.name] = tuple(
                dict.fromkeys((*tool_scopes.get(tool_spec.name, ()), *tool_spec.scopes))
            )
    limits = document.get("rate_limit", {})
    backend = next((kind for kind in ("app", "command", "url", "compose") if kind in document), "inprocess")
    command = _command(document, fail) if backend == "command" else None
    remote = (
        RemoteSpec(url=document["url"], headers=dict(document.get("headers", {})), lazy=document.get("start") == "lazy")
        if backend == "url"
        else None
    )
    return ServerSpec(
        name=str(name),
        source=source,
        backend=backend,
        title=document.get("title"),
        version=str(document.get("version", "1.0.0")),
        description=document.get("description"),
        instructions=document.get("instructions"),
        api_keys=tuple(document.get("api_keys", ())),
        public=document.get("auth") == "none",
        scopes=tuple(document.get("scopes", ())),
        tool_scopes={tool: needed for tool, needed in tool_scopes.items() if needed},
        rate_limit=RateLimitSpec(
            per_identity=limits.get("per_identity"), per_address=limits.get("per_address"), burst=limits.get("burst")
        ),
        timeout=float(document.get("timeout", DEFAULT_TIMEOUT)),
        tools=tuple(tools),
        resources=resources_,
        resource_templates=tuple(templates),
        prompts=prompts,
        app=document.get("app"),
        command=command,
        remote=remote,
        compose=_members(document, str(name), fail, lines) if backend == "compose" else (),
        separator=str(document.get("separator", "_")),
        curation=curation,
        document=document,
        lines=lines,
    )


_BACKEND_KEYS = frozenset({"app", "command", "url", "compose"})


def _defined(document: Mapping[str, Any], kind: str) -> tuple[Path_, list[Any]]:
    """An in-process server's own `kind` entries and where they are: `kind:` itself, or the
    `define:` list of its curation mapping (`tools: {define: [...], exclude: [...]}`)."""
    raw = document.get(kind, [])
    return ((kind, "define"), raw.get("define", [])) if isinstance(raw, Mapping) else ((kind,), raw)


def _dotted(path: Path_) -> str:
    return ".".join(map(str, path))


def _curated(
    curation: Curation,
    tools: list[ToolSpec],
    prompts: tuple[PromptSpec, ...],
    resources_: tuple[ResourceSpec, ...],
    templates: list[ResourceTemplateSpec],
) -> tuple[list[ToolSpec], tuple[PromptSpec, ...], tuple[ResourceSpec, ...], list[ResourceTemplateSpec]]:
    """An in-process server's entries as its curation serves them: the others left out, renamed
    ones under their new names (their handlers unchanged), overrides applied."""
    if not curation.active:
        return tools, prompts, resources_, templates

    def overridden(entry: Any, served: str, fields: Mapping[str, Any]) -> Any:
        changes: dict[str, Any] = {"name": served, **{k: v for k, v in fields.items() if k != "annotations"}}
        if "annotations" in fields:
            changes["annotations"] = {**(getattr(entry, "annotations", None) or {}), **fields["annotations"]}
        return dataclasses.replace(entry, **changes)

    return (
        [overridden(*chosen) for chosen in curation.tools.select(tools, lambda t: t.name)],
        tuple(overridden(*chosen) for chosen in curation.prompts.select(prompts, lambda p: p.name)),
        tuple(r for r in resources_ if curation.resources.matches(r.uri)),
        [t for t in templates if curation.resources.matches(t.uri_template)],
    )


def _members(document: Mapping[str, Any], name: str, fail: Any, lines: Mapping[Path_, int]) -> tuple[MemberSpec, ...]:
    """`compose:` checked so that no two members' names can ever meet on the composed route: each
    member once, never the server itself, and no member's `prefix + separator` the start of
    another's (so a namespaced name belongs to at most one prefixed member). At most one member
    may go unprefixed (`prefix: ""`); its names that start with another's prefix are hidden."""
    separator = str(document.get("separator", "_"))
    members: list[MemberSpec] = []
    for i, raw in enumerate(document["compose"]):
        server = raw if isinstance(raw, str) else raw["server"]
        prefix = server if isinstance(raw, str) else raw.get("prefix", server)
        where = ("compose", i) if isinstance(raw, str) else ("compose", i, "server")
        if server == name:
            raise fail(where, f"compose.{i}: {server!r} is this server itself")
        if any(m.server == server for m in members):
            raise fail(where, f"compose.{i}: {server!r} is a member already")
        for other in members:
            if prefix == "" and other.prefix == "":
                raise fail(where, f"compose.{i}: only one member may go without a prefix ({other.server!r} does)")
            mine, theirs = prefix + separator, other.prefix + separator
            if prefix and other.prefix and (mine.startswith(theirs) or theirs.startswith(mine)):
                raise fail(
                    where,
                    f"compose.{i}: prefix {prefix!r} collides with the prefix {other.prefix!r} of {other.server!r}: "
                    f"names starting {min(mine, theirs, key=len)!r} would be ambiguous",
                )
        members.append(MemberSpec(server=server, prefix=prefix, line=_line_of(lines, where)))
    return tuple(members)


def _command(document: Mapping[str, Any], fail: Any) -> CommandSpec:
    raw = document["command"]
    try:
        argv = shlex.split(raw) if isinstance(raw, str) else list(raw)
    except ValueError as exc:
        raise fail(("command",), f"command: {exc}") from None
    argv += list(document.get("args", []))
    if not argv or not argv[0].strip():
        raise fail(("command",), "command: names no program")
    return CommandSpec(
        argv=tuple(argv),
        env={str(key): str(value) for key, value in document.get("env", {}).items()},
        cwd=document.get("cwd"),
        lazy=document.get("start") == "lazy",
        per_session=bool(document.get("per_session", False)),
        max_processes=int(document.get("max_processes", DEFAULT_MAX_PROCESSES)),
    )


# The base URI a definition's JSON Schema is resolved against (its local `$ref`s only).
SCHEMA_BASE = "urn:mcp-tornado:schema"


def _check_json_schema(schema: Any, fail: Any, where: Path_) -> None:
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except (TypeError, LookupError) as exc:  # e.g. an unhashable or unknown "$schema"
        field = ".".join(str(p) for p in where)
        raise fail(where, f"{field}: not a valid JSON Schema: {exc}") from None
    except jsonschema.SchemaError as exc:
        field = ".".join(str(p) for p in (*where, *exc.absolute_path))
        raise fail((*where, *exc.absolute_path), f"{field}: not a valid JSON Schema: {exc.message}") from None
    dangling = _dangling_ref(schema)
    if dangling is not None:
        path, ref = dangling
        field = ".".join(str(p) for p in (*where, *path))
        raise fail((*where, *path), f"{field}: {ref!r} points at nothing in this schema") from None


def _dangling_ref(schema: Any) -> tuple[Path_, str] | None:
    """The first local `$ref` (`#...`) of `schema` that resolves to nothing, with its path; refs
    under a nested `$id` (their own base) and remote ones are left to the validator."""
    if not isinstance(schema, dict):
        return None
    resource = referencing.jsonschema.specification_with(
        str(schema.get("$schema", "")), default=referencing.jsonschema.DRAFT202012
    ).create_resource(schema)
    resolver = referencing.Registry().with_resource(SCHEMA_BASE, resource).resolver(SCHEMA_BASE)
    pending: list[tuple[Path_, Any]] = [((), schema)]
    while pending:
        path, node = pending.pop()
        if isinstance(node, dict):
            if path and "$id" in node:
                continue
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                try:
                    resolver.lookup(ref)
                except referencing.exceptions.Unresolvable:
                    return (*path, "$ref"), ref
            pending.extend(((*path, key), value) for key, value in node.items())
        elif isinstance(node, list):
            pending.extend(((*path, index), value) for index, value in enumerate(node))
    return None


def _line_of(lines: Mapping[Path_, int], path: Path_) -> int | None:
    """The line of the deepest node on `path` that the file has (1-based)."""
    for depth in range(len(path), -1, -1):
        line = lines.get(tuple(path[:depth]))
        if line is not None:
            return line
    return None


def _load_yaml(text: str, source: str) -> tuple[Any, dict[Path_, int]]:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()  # parsed once: the node tree gives the lines, then the data
        document = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None and exc.context_mark is not None and mark.index >= len(text.rstrip()):
            mark = exc.context_mark  # "unexpected end of file" says less than where the open construct began
        line = mark.line + 1 if mark is not None else None
        raise DefinitionError(source, line, f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(source, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}
    if root is not None:
        _collect_lines(root, (), lines)
    return document, lines


def _collect_lines(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            _collect_lines(value, child, lines)
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _collect_lines(item, (*path, i), lines)
