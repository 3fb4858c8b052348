"""Shared fixtures. Tests that need Redis start their own private redis-server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tongbao.cluster_harness import RedisServer

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("TONGBAO_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("TONGBAO_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private, durable redis-server (AOF, appendfsync always, aof-load-truncated no) on a
    free loopback port in a temp dir; ``.kill()`` SIGKILLs it, ``.start()`` restarts it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()
