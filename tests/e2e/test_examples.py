"""The example servers shipped in servers.d/ work with the official client."""

from __future__ import annotations

import shutil
from pathlib import Path

import mcp_types as types
import pytest

from tests.conftest import mcp_client, token

REPO = Path(__file__).parent.parent.parent


@pytest.fixture
def servers_dir(tmp_path: Path) -> Path:
    target = tmp_path / "servers.d"
    shutil.copytree(REPO / "servers.d", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.mark.gen_test
async def test_calculator(base_url):
    async with mcp_client(f"{base_url}/calculator/mcp", token("calculator", api_key="demo-key")) as client:
        result = await client.call_tool("calculate", {"operation": "multiply", "a": 6, "b": 7})
        assert result.structured_content == {"result": 42}
        divide = await client.call_tool("calculate", {"operation": "divide", "a": 1, "b": 0})
        assert divide.is_error and "division by zero" in divide.content[0].text
        progress = []

        async def on_progress(value, total, message):
            progress.append(value)

        total = await client.call_tool("sum_slowly", {"numbers": [1, 2], "delay": 0}, progress_callback=on_progress)
        assert total.content[0].text == "The sum is 3" and progress == [1, 2]


@pytest.mark.gen_test
async def test_library(base_url):
    async with mcp_client(f"{base_url}/library/mcp", token("library", api_key=None, user="ada")) as client:
        catalog = await client.read_resource("library://catalog")
        assert "Dune" in catalog.contents[0].text
        today = await client.read_resource("library://today")
        assert '"reader": "ada"' in today.contents[0].text
        prompt = await client.get_prompt("recommend", {"genre": "classics", "reader": "Ada"})
        assert "classics book for Ada" in prompt.messages[0].content.text
        summary = await client.get_prompt("summary", {"title": "Emma"})
        assert "'Emma'" in summary.messages[0].content.text
        ref = types.PromptReference(type="ref/prompt", name="recommend")
        completion = await client.complete(ref, {"name": "genre", "value": "sc"})
        assert completion.completion.values == ["science fiction"]
