"""The parity suite's gateway: one server behaviour on four routes, one per backend kind.

| route | backend | defined by |
| --- | --- | --- |
| `/inprocess/mcp` | YAML + Python handlers | `servers/parity.yaml` + `servers/parity_tools.py` |
| `/app/mcp` | the SDK's `MCPServer` object, in the gateway | `servers/app.yaml` -> `parity_app:mcp` |
| `/command/mcp` | the same module run as a stdio child | `servers/command.yaml` |
| `/url/mcp` | the same module under uvicorn, proxied | `url.yaml`, written here for `upstream` |

One gateway serves the whole package (`base_url` here replaces the tree-wide one, which starts
a gateway per test): a stdio child takes about a second to start, and a gateway per test
would spend most of the suite's time starting children. Tests share nothing else: each opens
its own sessions, and what the servers count (cancellations) is compared before and after.
The definitions live in their own folder, so the rest of the suite never sees these routes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.parity.support import SERVERS, GatewayThread, Upstream


@pytest.fixture(scope="package")
def upstream() -> Iterator[Upstream]:
    """`parity_app.py` under uvicorn: the `url:` route's upstream, and the SDK's own server."""
    up = Upstream()
    yield up
    up.stop()


@pytest.fixture(scope="package")
def parity_servers(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Path:
    """A private copy of tests/parity/servers, plus the `url:` route to this package's upstream."""
    target = tmp_path_factory.mktemp("parity") / "servers.d"
    shutil.copytree(SERVERS, target, ignore=shutil.ignore_patterns("__pycache__"))
    (target / "url.yaml").write_text(
        f"# The parity server under uvicorn, proxied.\nurl: {upstream.url}\nstart: lazy\n", encoding="utf-8"
    )
    return target


@pytest.fixture(scope="package")
def parity_gateway(parity_servers: Path) -> Iterator[GatewayThread]:
    running = GatewayThread(parity_servers)
    yield running
    running.stop()


@pytest.fixture
def base_url(parity_gateway: GatewayThread) -> str:
    return parity_gateway.url


@pytest.fixture
def servers_dir(tmp_path: Path, parity_servers: Path) -> Path:
    """For a test here that wants a gateway of its own (tests/conftest.py's `gateway`, e.g. to edit
    definitions): a private copy of the parity servers, never tests/servers."""
    target = tmp_path / "servers.d"
    shutil.copytree(parity_servers, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture
def sdk_url(upstream: Upstream) -> str:
    """The SDK's own server (the upstream, without the gateway): what the SDK answers is asked here."""
    return upstream.url
