"""The Redis lock gate against a real Redis: non-blocking, random token, TTL, renewal, safe release."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import cast

import pytest
import redis

from memtasks.domain.errors import ConfigurationError
from memtasks.locks import (
    LockHold,
    LockLost,
    LockUnavailable,
    RedisLockGate,
    check_reachable,
    describe_client,
    mask_redis_url,
    redis_client,
)
from tests.helpers import all_at_once, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.redis]


@pytest.fixture
def client(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    c = redis_client(redis_url)
    yield c
    keys = list(c.scan_iter(match=f"{key_prefix}*"))
    if keys:
        c.delete(*keys)
    c.close()


@pytest.fixture
def name(key_prefix: str) -> str:
    return f"{key_prefix}lock"


def get(client: redis.Redis, key: str) -> bytes | None:
    return cast("bytes | None", client.get(key))


def pttl(client: redis.Redis, key: str) -> int:
    return cast(int, client.pttl(key))


def test_hold_takes_the_lock_with_a_ttl_and_releases_it(client: redis.Redis, name: str) -> None:
    gate = RedisLockGate(client, name, ttl_s=5)
    with gate.hold() as held:
        assert held and held.acquired
        token = get(client, name)
        assert token is not None and len(token) == 32
        assert 0 < pttl(client, name) <= 5_000
        assert held.owned()
        assert gate.is_locked()
    assert client.get(name) is None
    assert not gate.is_locked()


def test_tokens_are_random(client: redis.Redis, name: str) -> None:
    gate = RedisLockGate(client, name, ttl_s=5)
    tokens = set()
    for _ in range(3):
        with gate.hold():
            tokens.add(client.get(name))
    assert len(tokens) == 3


def test_a_held_lock_rejects_others_without_waiting(client: redis.Redis, redis_url: str, name: str) -> None:
    gate = RedisLockGate(client, name, ttl_s=30)
    other = RedisLockGate(redis_client(redis_url), name, ttl_s=30)
    with gate.hold() as held:
        assert held
        started = time.monotonic()
        with other.hold() as second:
            assert not second
            assert not second.acquired
        assert time.monotonic() - started < 1.0, "non-blocking"
        assert held.owned(), "the loser's exit did not release the winner's lock"
    with other.hold() as second:
        assert second, "free again after the release"


def test_only_one_of_many_concurrent_holders_wins(client: redis.Redis, redis_url: str, name: str) -> None:
    clients = [redis_client(redis_url) for _ in range(8)]
    gates = iter([RedisLockGate(c, name, ttl_s=30) for c in clients])

    def attempt() -> bool:
        gate = next(gates)
        with gate.hold() as held:
            if held:
                # Hold until every other attempt has been refused.
                wait_for(lambda: int(get(client, f"{name}:refused") or 0) == 7)
            else:
                client.incr(f"{name}:refused")
            return bool(held)

    results = all_at_once(8, attempt)
    assert sorted(results) == [False] * 7 + [True]


def test_lock_is_released_when_the_block_raises(client: redis.Redis, name: str) -> None:
    gate = RedisLockGate(client, name, ttl_s=30)
    holds: list[LockHold] = []

    def fail_while_holding() -> None:
        with gate.hold() as held:
            holds.append(held)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_while_holding()
    assert len(holds) == 1 and holds[0].acquired
    assert client.get(name) is None
    assert not holds[0].renewing


def test_release_never_deletes_another_holders_key(client: redis.Redis, name: str) -> None:
    gate = RedisLockGate(client, name, ttl_s=30, renew_interval_s=0)
    with gate.hold() as held:
        # Our lock expires and another process takes the name.
        client.set(name, "someone-else", px=30_000)
    assert client.get(name) == b"someone-else", "compare-and-delete left the new holder alone"
    assert held.lost


def test_renewal_keeps_the_lock_beyond_its_ttl(client: redis.Redis, redis_url: str, name: str) -> None:
    gate = RedisLockGate(client, name, ttl_s=0.4, renew_interval_s=0.1)
    other = RedisLockGate(redis_client(redis_url), name, ttl_s=0.4)
    with gate.hold() as held:
        started = time.monotonic()
        token = client.get(name)
        wait_for(lambda: held.renewals >= 8 and time.monotonic() - started > 3 * gate.ttl_s, timeout=10)
        assert client.get(name) == token, "still ours after three TTLs"
        with other.hold() as second:
            assert not second
        held.check()
        assert held.renewing
    assert not held.renewing, "the renew thread stopped with the release"
    assert client.get(name) is None


def test_explicit_extend_resets_the_ttl(client: redis.Redis, name: str) -> None:
    gate = RedisLockGate(client, name, ttl_s=2, renew_interval_s=0)
    with gate.hold() as held:
        assert not held.renewing, "renew thread off"
        client.pexpire(name, 100)
        held.extend()
        assert pttl(client, name) > 1_000
        assert held.renewals == 1


def test_check_reports_a_stolen_lock(client: redis.Redis, name: str) -> None:
    gate = RedisLockGate(client, name, ttl_s=1, renew_interval_s=0.05)
    with gate.hold() as held:
        held.check()
        client.set(name, "thief", px=30_000)
        wait_for(lambda: held.lost)
        with pytest.raises(LockLost, match="lost"):
            held.check()
        with pytest.raises(LockLost):
            held.extend()
    assert client.get(name) == b"thief"


def test_a_refused_hold_cannot_be_used(client: redis.Redis, redis_url: str, name: str) -> None:
    gate = RedisLockGate(client, name, ttl_s=30)
    with gate.hold(), RedisLockGate(redis_client(redis_url), name, ttl_s=30).hold() as refused:
        with pytest.raises(LockLost, match="not acquired"):
            refused.check()
        with pytest.raises(LockLost, match="not acquired"):
            refused.extend()


def test_unreachable_redis_is_a_clear_error_with_the_password_masked(name: str) -> None:
    url = "redis://:s3cret@127.0.0.1:1/3"
    client = redis_client(url, connect_timeout_s=0.5, retries=0)
    gate = RedisLockGate(client, name, ttl_s=5)
    with pytest.raises(LockUnavailable) as info, gate.hold():
        pass
    message = str(info.value)
    assert "redis://:***@127.0.0.1:1/3" in message
    assert "s3cret" not in message
    assert name in message
    with pytest.raises(LockUnavailable, match=re.escape("127.0.0.1:1")):
        check_reachable(client)


def test_check_reachable_passes_on_a_live_server(client: redis.Redis) -> None:
    check_reachable(client)


def test_invalid_url_is_a_configuration_error_without_the_password() -> None:
    with pytest.raises(ConfigurationError, match="MEMTASKS_LOCK_REDIS_URL") as info:
        redis_client("http://:hunter2@example.com:6379/0")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@host:6379/1", "redis://:***@host:6379/1"),
        ("redis://user:pw@host/2", "redis://user:***@host/2"),
        ("rediss://u:p%40ss@[::1]:6380/0", "rediss://u:***@[::1]:6380/0"),
    ],
)
def test_mask_redis_url(url: str, masked: str) -> None:
    assert mask_redis_url(url) == masked


def test_describe_client_names_the_server_and_masks_the_password() -> None:
    described = describe_client(redis_client("redis://:pw@10.1.2.3:6390/4"))
    assert described == "redis://:***@10.1.2.3:6390/4"


@pytest.mark.parametrize(("ttl_s", "renew"), [(0, None), (-1, None), (1, 1), (1, 2), (1, -0.1)])
def test_gate_rejects_bad_timings(client: redis.Redis, name: str, ttl_s: float, renew: float | None) -> None:
    with pytest.raises(ConfigurationError, match=name):
        RedisLockGate(client, name, ttl_s=ttl_s, renew_interval_s=renew)


def test_gate_rejects_an_empty_name(client: redis.Redis) -> None:
    with pytest.raises(ConfigurationError, match="lock name"):
        RedisLockGate(client, "", ttl_s=1)


def test_names_are_independent(client: redis.Redis, name: str) -> None:
    with (
        RedisLockGate(client, f"{name}:a", ttl_s=5).hold() as a,
        RedisLockGate(client, f"{name}:b", ttl_s=5).hold() as b,
    ):
        assert a and b


def test_the_semaphore_admits_at_most_its_limit_and_frees_on_release(redis_url: str, key_prefix: str) -> None:
    from memtasks.locks import redis_client
    from memtasks.permits import RedisSemaphore

    permits = RedisSemaphore(redis_client(redis_url), f"{key_prefix}permits", limit=2, ttl_s=30)
    first, second = permits.acquire(), permits.acquire()
    assert first and second and first != second
    assert permits.acquire() is None
    assert permits.held() == 2
    permits.release(first)
    third = permits.acquire()
    assert third is not None and permits.renew(third)


def test_a_dead_holders_permit_expires(redis_url: str, key_prefix: str) -> None:
    from memtasks.locks import redis_client
    from memtasks.permits import RedisSemaphore

    permits = RedisSemaphore(redis_client(redis_url), f"{key_prefix}permits", limit=1, ttl_s=0.2)
    token = permits.acquire()
    assert token is not None and permits.acquire() is None
    wait_for(lambda: permits.acquire() is not None, timeout=5)
    assert not permits.renew(token), "the expired permit cannot be renewed"
