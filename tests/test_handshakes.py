"""Sessions whose clients said the same in `initialize` share one copy of it (`Handshakes`,
mcp_tornado/transport/handshakes.py): what each client declared still decides what it is asked."""

from __future__ import annotations

import mcp_types as types
import pytest
from mcp_types import InitializeRequestParams

from mcp_tornado.transport.handshakes import MAX_KEY_CHARS, Handshakes
from tests.conftest import mcp_client, token


def params(name: str = "client", **capabilities: dict) -> dict:
    return {
        "protocolVersion": "2025-11-25",
        "capabilities": capabilities,
        "clientInfo": {"name": name, "version": "1.0"},
    }


def model(raw: dict) -> InitializeRequestParams:
    return InitializeRequestParams.model_validate(raw)


def test_the_same_params_give_the_copy_kept_first():
    handshakes = Handshakes()
    first = model(params())
    assert handshakes.shared(params(), first) is first
    again = model(params())
    assert handshakes.shared(params(), again) is first


def test_the_order_of_keys_does_not_matter():
    handshakes = Handshakes()
    first = model(params())
    handshakes.shared(params(), first)
    reordered = dict(reversed(list(params().items())))
    assert handshakes.shared(reordered, model(reordered)) is first


def test_different_params_keep_their_own():
    handshakes = Handshakes()
    plain = model(params())
    handshakes.shared(params(), plain)
    capable = model(params(elicitation={}))
    assert handshakes.shared(params(elicitation={}), capable) is capable
    other = model(params("other"))
    assert handshakes.shared(params("other"), other) is other
    assert len(handshakes) == 3


def test_long_params_are_not_kept():
    handshakes = Handshakes()
    raw = params("x" * MAX_KEY_CHARS)
    first = model(raw)
    assert handshakes.shared(raw, first) is first
    second = model(raw)
    assert handshakes.shared(raw, second) is second
    assert len(handshakes) == 0


def test_the_table_is_bounded_and_forgets_the_least_recently_seen():
    handshakes = Handshakes(max_handshakes=2)
    a, b, c = model(params("a")), model(params("b")), model(params("c"))
    handshakes.shared(params("a"), a)
    handshakes.shared(params("b"), b)
    assert handshakes.shared(params("a"), model(params("a"))) is a  # `a` seen again: `b` is the oldest now
    handshakes.shared(params("c"), c)
    assert len(handshakes) == 2
    assert handshakes.shared(params("a"), model(params("a"))) is a
    fresh_b = model(params("b"))
    assert handshakes.shared(params("b"), fresh_b) is fresh_b  # forgotten


CAPABILITIES_TOOL = """\
async def declared(arguments, context):
    capabilities = context.client_capabilities
    return "elicitation" if capabilities is not None and capabilities.elicitation is not None else "none"
"""


@pytest.fixture
def servers_dir(servers_dir):
    (servers_dir / "caps_tools.py").write_text(CAPABILITIES_TOOL)
    (servers_dir / "caps.yaml").write_text("tools:\n  - name: declared\n    handler: caps_tools:declared\n")
    return servers_dir


async def _declared(url: str, *, elicitation: bool) -> str:
    async def elicit(context, request):
        return types.ElicitResult(action="decline")

    async with mcp_client(url, token("caps"), elicitation_callback=elicit if elicitation else None) as client:
        result = await client.call_tool("declared", {})
    return result.content[0].text


@pytest.mark.gen_test(timeout=30)
async def test_each_session_keeps_what_its_client_declared(base_url):
    url = f"{base_url}/caps/mcp"
    # The same client name and version each time; only the capabilities differ.
    for elicitation in (False, True, False, True):
        assert await _declared(url, elicitation=elicitation) == ("elicitation" if elicitation else "none")
