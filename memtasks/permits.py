"""The fleet-wide permits (the LLM permits): at most ``limit`` holders at once, across every process.

A Redis sorted set of random tokens scored by their expiry (Redis server time): acquire,
renew and expire run as Lua scripts, atomic on the server, so a holder killed with
``kill -9`` frees its permit after the TTL. Nothing connects at import time.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import redis
from redis.exceptions import RedisError

from memtasks.domain.errors import ConfigurationError
from memtasks.locks import LockUnavailable, describe_client

log = logging.getLogger(__name__)


_ACQUIRE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return 1
end
return 0
"""

_RENEW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local held = redis.call('ZSCORE', KEYS[1], ARGV[2])
if held and tonumber(held) > now_ms then
  redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[1]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
  return 1
end
return 0
"""


class RedisSemaphore:
    """A fleet-wide count of permits (the LLM permits): at most ``limit`` holders at once.

    Each holder is a random token in a sorted set scored by its expiry (Redis server
    time), so a holder killed with ``kill -9`` frees its permit after ``ttl_s``. Acquire
    never waits: it returns None when every permit is taken. All steps are Lua scripts,
    atomic on the server.
    """

    def __init__(self, client: redis.Redis, name: str, *, limit: int, ttl_s: float = 300.0) -> None:
        if limit < 1:
            raise ConfigurationError(f"invalid permit count {limit!r} for {name!r}: must be at least 1")
        if not ttl_s > 0:
            raise ConfigurationError(f"invalid TTL {ttl_s!r} for {name!r}: must be > 0 seconds")
        self.client = client
        self.name = name
        self.limit = limit
        self.ttl_ms = int(ttl_s * 1000)
        self.server = describe_client(client)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)

    def acquire(self) -> str | None:
        """A permit token, or None when all ``limit`` permits are held."""
        token = secrets.token_hex(16)
        try:
            taken = self._acquire(keys=[self.name], args=[self.limit, self.ttl_ms, token])
        except RedisError as exc:
            raise LockUnavailable(f"cannot take a permit of {self.name!r} on {self.server}: {exc}") from exc
        return token if taken == 1 else None

    def renew(self, token: str) -> bool:
        """Extend a held permit's TTL; False when it had already expired."""
        try:
            return bool(self._renew(keys=[self.name], args=[self.ttl_ms, token]) == 1)
        except RedisError as exc:
            raise LockUnavailable(f"cannot renew a permit of {self.name!r} on {self.server}: {exc}") from exc

    def release(self, token: str) -> None:
        try:
            self.client.zrem(self.name, token)
        except RedisError as exc:  # the permit expires by itself
            log.warning("memtasks.locks: could not release a permit of %r: %s", self.name, exc)

    def held(self) -> int:
        """Permits held right now (expired ones not counted)."""
        now_ms = int(time.time() * 1000)
        count: Any = self.client.zcount(self.name, now_ms, "+inf")
        return int(count)


__all__ = ["RedisSemaphore"]
