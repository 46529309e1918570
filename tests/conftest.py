"""Fixtures shared by both tiers."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.devstack import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free port in a temporary directory, for one module."""
    with tempfile.TemporaryDirectory() as tmpdir:
        server = RedisServer(Path(tmpdir)).start()
        try:
            yield server
        finally:
            server.stop()
