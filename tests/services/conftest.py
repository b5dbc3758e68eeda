"""Fixtures of the service tests: the consolidation lock in a real Redis, under a key of the test's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from memtasks.locks import RedisLockGate, redis_client


@pytest.fixture
def lock_client(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    client = redis_client(redis_url)
    yield client
    keys = list(client.scan_iter(match=f"{key_prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def lock_name(key_prefix: str) -> str:
    return f"{key_prefix}consolidate"


@pytest.fixture
def gate(lock_client: redis.Redis, lock_name: str) -> RedisLockGate:
    return RedisLockGate(lock_client, lock_name, ttl_s=30)
