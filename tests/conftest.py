"""Shared fixtures: real SQLite files and a real PostgreSQL, one schema per test.

A service that the tests need and cannot reach fails the test with a message naming the
service; nothing is skipped silently.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from memtasks.domain.backoff import RetryPolicy
from memtasks.domain.clock import FrozenClock
from memtasks.storage.engine import EngineOptions, get_engine, reset_registry
from memtasks.storage.mem_tree_queue import MemTreeJobs
from memtasks.storage.queue import QueueConfig

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BACKENDS = ["sqlite", "postgresql"]

SERIAL_PATHS = (
    "tests/chaos/",
    "tests/pipeline/",
    "tests/fuzz/",
    "tests/security/",
    "tests/client/",
    "tests/web/test_browser.py",
    "tests/cli/test_cli.py",
    "tests/cli/test_matrix.py",
    "tests/cli/test_fleet_settings.py",
    "tests/worker/test_wiring.py",
    "tests/test_demo.py",
)
"""Modules that flush or share Redis databases 5 and 6, run fleets of processes whose timing
the other tests' load would skew, or count across the session (the fuzz budget)."""
SERIAL_FIXTURES = frozenset({"broker_url", "lock_url", "fleet", "probes"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``serial`` what must not run beside other tests: ``make test`` runs the rest on two
    processes (pytest-xdist), then these alone."""
    root = str(config.rootpath)
    for item in items:
        where = str(item.path).removeprefix(root).lstrip("/")
        if where.startswith(SERIAL_PATHS) or SERIAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.serial)


@pytest.fixture(autouse=True)
def _scrub_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MEMTASKS_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("MEMTASKS_"):
            monkeypatch.delenv(name)
    yield
    reset_registry()


_pg_error: list[str] = []


def require_postgres() -> None:
    if _pg_error:
        pytest.fail(_pg_error[0])
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        _pg_error.append(
            f"PostgreSQL is not reachable at {make_url(POSTGRES_URL).render_as_string()}: "
            f"{str(exc).splitlines()[0]} — start it with `make services` or set TEST_POSTGRES_URL"
        )
        pytest.fail(_pg_error[0])


def postgres_schema_url(schema: str) -> str:
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards; yields its URL."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield postgres_schema_url(schema)
    finally:
        reset_registry()
        # A connection this test leaked warns now, in this test, not in a later one.
        gc.collect()
        try:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        finally:
            admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """A database URL of an empty database, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/memtasks.sqlite3"
    return str(request.getfixturevalue("pg_schema"))


@pytest.fixture
def engine(db_url: str):  # type: ignore[no-untyped-def]
    return get_engine(db_url, EngineOptions())


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def jobs(engine, clock: FrozenClock) -> MemTreeJobs:  # type: ignore[no-untyped-def]
    """The queue with a frozen clock and no jitter, so backoffs are exact."""
    return MemTreeJobs(engine, clock=clock, config=QueueConfig(policy=RetryPolicy(jitter=0)))


_redis_error: list[str] = []


@pytest.fixture
def redis_url() -> str:
    """The test Redis URL; the test fails, naming Redis, when it does not answer."""
    import redis

    if not _redis_error:
        try:
            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
            client.ping()
            client.close()
        except redis.RedisError as exc:
            _redis_error.append(
                f"Redis is not reachable at {REDIS_URL}: {exc} — start it with `make services` "
                "or set TEST_REDIS_URL"
            )
    if _redis_error:
        pytest.fail(_redis_error[0])
    return REDIS_URL


@pytest.fixture
def key_prefix() -> str:
    """A Redis key prefix of this test alone, so tests never share keys."""
    return f"memtasks-test:{uuid.uuid4().hex[:12]}:"
