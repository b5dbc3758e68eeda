"""Fixtures of the pipeline tests: a real broker, a real database, real Celery processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.pipeline.fleet import Fleet

RABBIT_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def broker_url(redis_url: str) -> str:
    """A Redis database of its own for the broker (flushed first)."""
    url = redis_url.rsplit("/", 1)[0] + "/5"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def lock_url(redis_url: str) -> str:
    url = redis_url.rsplit("/", 1)[0] + "/6"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def probes(lock_url: str) -> redis.Redis:
    """The Redis the probe handler counts its runs in."""
    return redis.Redis.from_url(lock_url, decode_responses=True)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """The test's processes. Request it after ``db_url``: fixtures are torn down in reverse,
    so the fleet stops before the test's PostgreSQL schema is dropped."""
    made = Fleet(tmp_path, env={})
    yield made
    made.stop_all()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]
