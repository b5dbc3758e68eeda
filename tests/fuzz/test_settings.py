"""Fuzzed settings: durations, counts, flags and URLs, given as arguments and as
``MEMTASKS_*`` variables. A bad value is a ConfigurationError naming the variable (never a
traceback from deep inside, never a password in the message); a good one is kept."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import annotated_types as at
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kombu import Connection

from memtasks.config import Settings, load_settings
from memtasks.domain.errors import ConfigurationError
from memtasks.locks import redis_client
from memtasks.storage.engine import parse_url
from memtasks.worker.app import beat_entries
from tests.fuzz.budget import attempt, fuzz
from tests.fuzz.strategies import storable_char

pytestmark = [pytest.mark.fuzz, pytest.mark.unit]

SECRET = "s3cr3t-PW"
FLOATS = sorted(n for n, f in Settings.model_fields.items() if f.annotation is float)
INTS = sorted(n for n, f in Settings.model_fields.items() if f.annotation is int)
BOOLS = sorted(n for n, f in Settings.model_fields.items() if f.annotation is bool)


def env_name(field: str) -> str:
    return f"MEMTASKS_{field.upper()}"


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block (the tier's tests run one at a time)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def in_bounds(field: str, value: float) -> bool:
    """What the field's declared constraints allow (finite, then gt/ge/le)."""
    if not math.isfinite(value):
        return False
    for rule in Settings.model_fields[field].metadata:
        if isinstance(rule, at.Gt) and not value > rule.gt:  # type: ignore[operator]
            return False
        if isinstance(rule, at.Ge) and not value >= rule.ge:  # type: ignore[operator]
            return False
        if isinstance(rule, at.Le) and not value <= rule.le:  # type: ignore[operator]
            return False
    return True


def load(field: str, value: object, *, via_env: bool) -> Settings | ConfigurationError:
    if via_env:
        text = str(value).replace("\x00", "")  # an environment variable cannot hold a NUL
        with environment({env_name(field): text}):
            return attempt(load_settings, ConfigurationError)
    return attempt(lambda: load_settings(**{field: value}), ConfigurationError)


def assert_names(error: ConfigurationError, *names: str) -> None:
    message = str(error)
    assert message.startswith("invalid settings: ")
    assert "\n" not in message
    assert any(name in message for name in names), message
    assert SECRET not in message  # generated URLs carry it as their password


numbers = st.one_of(
    st.floats(),
    st.floats(-10.0, 10.0),
    st.integers(-(10**12), 10**12).map(float),
    st.sampled_from([0.0, -0.0, 1e9, 1e9 + 1, 1e300, math.inf, -math.inf, math.nan, 5e-324]),
)


@fuzz(500)
@given(st.sampled_from(FLOATS), numbers, st.booleans())
def test_durations_are_finite_and_in_range_or_named(field: str, value: float, via_env: bool) -> None:
    settings = load(field, repr(value) if via_env else value, via_env=via_env)
    if isinstance(settings, ConfigurationError):
        assert_names(settings, env_name(field), "MEMTASKS_BACKOFF_CAP_S")
        assert not in_bounds(field, value) or field in {"backoff_base_s", "backoff_cap_s"}
    else:
        assert in_bounds(field, value), f"{field}={value!r} accepted"
        assert getattr(settings, field) == value


@fuzz(400)
@given(
    st.sampled_from(INTS),
    st.one_of(
        st.integers(-(10**6), 10**6),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not v.is_integer()),
        st.sampled_from([math.nan, math.inf]),
    ),
    st.booleans(),
)
def test_counts_are_whole_numbers_in_range_or_named(field: str, value: float, via_env: bool) -> None:
    settings = load(field, value, via_env=via_env)
    whole = isinstance(value, int)
    if isinstance(settings, ConfigurationError):
        assert_names(settings, env_name(field))
        assert not (whole and in_bounds(field, value))
    else:
        assert whole and in_bounds(field, value), f"{field}={value!r} accepted"
        assert getattr(settings, field) == value


@fuzz(300)
@given(
    st.sampled_from(FLOATS + INTS + BOOLS + ["sqlite_journal_mode", "beat_intervals"]),
    st.text(storable_char, max_size=12),
)
def test_any_text_in_a_variable_is_kept_or_named(field: str, text: str) -> None:
    settings = load(field, text, via_env=True)
    if isinstance(settings, ConfigurationError):
        assert_names(settings, env_name(field))
    else:
        assert isinstance(settings, Settings)


hosts = st.sampled_from(["127.0.0.1", "redis", "[::1]", "db.example", "", "h_st", "ü.example"])
ports = st.one_of(st.integers(0, 70_000).map(str), st.sampled_from(["", "x", "-1", "6379x", " 1"]))
paths = st.one_of(
    st.integers(0, 20).map(lambda n: f"/{n}"), st.sampled_from(["", "/", "//", "/x", "/0/1", "/-1"])
)
schemes = st.sampled_from(
    ["redis", "rediss", "amqp", "pyamqp", "unix", "http", "REDIS", "postgresql", "", "redis+socket", "memory"]
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=40))
    scheme, host, port, path = draw(schemes), draw(hosts), draw(ports), draw(paths)
    auth = draw(st.sampled_from(["", f":{SECRET}@", f"user:{SECRET}@"]))
    return f"{scheme}://{auth}{host}{':' + port if port else ''}{path}"


@fuzz(400)
@given(urls(), st.booleans())
def test_broker_urls_parse_or_are_named_without_the_password(url: str, via_env: bool) -> None:
    settings = load("broker_url", url, via_env=via_env)
    if isinstance(settings, ConfigurationError):
        assert_names(settings, "MEMTASKS_BROKER_URL")
        return
    # Accepted: kombu parses it (a bad one would only fail at the worker's first connect).
    with Connection(settings.broker_url) as connection:
        assert connection.transport_cls


@fuzz(400)
@given(urls(), st.booleans())
def test_lock_redis_urls_parse_or_are_named_without_the_password(url: str, via_env: bool) -> None:
    settings = load("lock_redis_url", url, via_env=via_env)
    if isinstance(settings, ConfigurationError):
        assert_names(settings, "MEMTASKS_LOCK_REDIS_URL")
        return
    client = redis_client(settings.lock_redis_url)  # parses the URL; connects lazily
    assert client.connection_pool is not None
    client.close()


@fuzz(600)
@given(
    st.one_of(
        st.text(max_size=40),
        urls(),
        st.builds(
            "{}://{}@{}/{}".format,
            st.sampled_from(
                ["postgresql", "postgres", "postgresql+psycopg", "sqlite", "mysql", "sqlite+pysqlite"]
            ),
            st.sampled_from(["u", f"u:{SECRET}", ""]),
            st.sampled_from(["h", "h:5432", "h:x", "h:99999", ""]),
            st.text(max_size=10),
        ),
    )
)
def test_database_urls_are_sqlite_or_postgresql_or_named(url: str) -> None:
    """Settings keep any text (see the test below); the engine judges it when it opens."""
    parsed = attempt(lambda: parse_url(url), ConfigurationError)
    if isinstance(parsed, ConfigurationError):
        message = str(parsed)
        assert "MEMTASKS_DATABASE_URL" in message or "SQLite file" in message, message
        if f":{SECRET}@" in url:  # a password, with or without a well-formed scheme
            assert SECRET not in message
    else:
        assert parsed.get_backend_name() in {"sqlite", "postgresql"}


@fuzz(200)
@given(
    st.one_of(
        st.text(max_size=30),
        st.dictionaries(
            st.text(max_size=12), st.one_of(st.floats(), st.integers(), st.text(max_size=3)), max_size=3
        ),
    )
)
def test_beat_intervals_are_known_sweeps_with_durations_or_named(value: str | dict[str, Any]) -> None:
    import json

    text = value if isinstance(value, str) else json.dumps(value)
    settings = load("beat_intervals", text, via_env=True)
    if isinstance(settings, ConfigurationError):
        assert_names(settings, "MEMTASKS_BEAT_INTERVALS")
        return
    entries = attempt(lambda: beat_entries(settings), ValueError)
    if isinstance(entries, ValueError):
        assert "MEMTASKS_BEAT_INTERVALS names unknown sweeps" in str(entries)
    else:
        for interval in settings.beat_intervals.values():
            assert math.isfinite(interval) and 0 < interval <= 1e9


def test_settings_keep_a_database_url_for_the_engine_to_judge() -> None:
    for url in ("nonsense", "mysql://u@h/db", f"postgresql://u:{SECRET}@h:x/db"):
        settings = load_settings(database_url=url)
        assert settings.resolved_database_url == url
        error = attempt(lambda: parse_url(settings.resolved_database_url), ConfigurationError)  # noqa: B023
        assert isinstance(error, ConfigurationError)
        assert "MEMTASKS_DATABASE_URL" in str(error)
        assert SECRET not in str(error)
