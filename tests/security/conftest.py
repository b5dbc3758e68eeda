"""Fixtures of the security tests: a private Redis that wants a password, and that password.

Every URL these tests hand memtasks carries :data:`SECRET`; a test fails when the secret shows
up where it must not. The Redis is this session's own (``redis-server`` on a free port, no
persistence, stopped afterwards): tests elsewhere flush the shared one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy.engine import make_url

from tests.helpers import private_redis_server
from tests.pipeline.fleet import Fleet

SECRET = "s3cret-Pw-7f1d9c"
"""The password of every URL in these tests: it must never be shown."""


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://:SECRET@127.0.0.1:PORT`` of a Redis started for this session (no database number)."""
    with private_redis_server(tmp_path_factory.mktemp("redis"), password=SECRET) as url:
        yield url


def _flushed(url: str) -> str:
    with contextlib.closing(redis.Redis.from_url(url)) as client:
        client.flushdb()
    return url


@pytest.fixture
def broker_url(private_redis: str) -> str:
    """The private Redis's database 0, empty: the broker."""
    return _flushed(f"{private_redis}/0")


@pytest.fixture
def lock_url(private_redis: str) -> str:
    """The private Redis's database 1, empty: locks and permits."""
    return _flushed(f"{private_redis}/1")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """The test's processes (stopped at the end). Request it after ``db_url``."""
    made = Fleet(tmp_path, env={})
    yield made
    made.stop_all()


def assert_no_secret(text: str, where: str, secret: str = SECRET) -> None:
    """``secret`` — or any 6-character piece of it — does not occur in ``text``."""
    pieces = {secret[i : i + 6] for i in range(max(1, len(secret) - 5))}
    found = sorted(piece for piece in pieces if piece in text)
    assert not found, f"{where} shows the secret ({found[0]!r}…):\n{text[-3000:]}"


def with_password(url: str) -> tuple[str, str]:
    """``url`` (a PostgreSQL URL of the tests) with a password, and that password: SECRET, or
    the one TEST_POSTGRES_URL already has (the test server trusts local connections)."""
    parsed = make_url(url)
    if parsed.password:
        return url, str(parsed.password)
    return parsed.set(password=SECRET).render_as_string(hide_password=False), SECRET
