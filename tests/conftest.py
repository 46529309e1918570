"""What both tiers share: how tests are spread over pytest-xdist's processes.

The unit tier starts no redis-server or other process of the stack; fixtures that do
(`redis_server`, `stack`, `deployment`) live in tests/integration/conftest.py.
"""

from __future__ import annotations

import pytest


def pytest_itemcollected(item: pytest.Item) -> None:
    """Tests that share a module-scoped fixture (a deployment, a built wheel, a browser) run
    on one process (`make test` runs `--dist loadgroup`), so the fixture is set up once;
    every other test goes to whichever process is free. Marked as each test is collected,
    before pytest-xdist reads the marks to group them."""
    definitions = getattr(item, "_fixtureinfo", None)
    if definitions is None:
        return
    if any(d[-1].scope == "module" for d in definitions.name2fixturedefs.values()):
        item.add_marker(pytest.mark.xdist_group(item.module.__name__))
