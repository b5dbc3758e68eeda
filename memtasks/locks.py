"""The fleet-wide Redis lock gate: at most one holder of a name across every process.

:class:`RedisLockGate` takes a lock without waiting (``SET name token NX PX ttl`` with a
random token, through :class:`redis.lock.Lock`), releases it with a compare-and-delete
Lua script (a holder whose lock expired and was taken by another never deletes the new
holder's key), and always has a TTL, so a crashed holder frees the name by itself.

Renewal: while a hold is open, a background thread resets the TTL every
``renew_interval_s`` (a third of the TTL by default) with a compare-and-pexpire script,
so a run that takes longer than the TTL keeps its lock; the thread stops, and is joined,
before the release. The holder can also :meth:`LockHold.extend` explicitly and should
call :meth:`LockHold.check` between units of work: it raises :class:`LockLost` when a
renewal found the lock owned by someone else, or when no renewal has succeeded for a
whole TTL (Redis unreachable), so the holder stops before two holders overlap for long.

Nothing connects at import time; :func:`redis_client` builds a client with short
timeouts, and every connection failure is raised as :class:`LockUnavailable` naming the
Redis URL with its password masked. The gate is generic: the consolidation sweep and the
other beat sweeps use it under their own lock names.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import LockNotOwnedError, RedisError
from redis.lock import Lock
from redis.retry import Retry

from memtasks.domain.errors import ConfigurationError, MemtasksError
from memtasks.domain.masking import MASK, mask_url, mask_urls_in

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 2.0
DEFAULT_SOCKET_TIMEOUT_S = 5.0
DEFAULT_RETRIES = 2


class LockUnavailable(MemtasksError):
    """The lock server (Redis) is not reachable."""


class LockLost(MemtasksError):
    """The lock was lost while held: it expired or another holder owns it now."""


def mask_redis_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, safe for logs and errors."""
    return mask_url(url)


def describe_client(client: redis.Redis) -> str:
    """A masked ``redis://`` URL naming the server ``client`` talks to."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        where = f"unix://{kwargs['path']}"
    else:
        scheme = "rediss" if client.connection_pool.connection_class.__name__.startswith("SSL") else "redis"
        where = f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    auth = ""
    if kwargs.get("password"):
        auth = f"{kwargs.get('username') or ''}:{MASK}@"
    if auth and "://" in where:
        scheme, rest = where.split("://", 1)
        where = f"{scheme}://{auth}{rest}"
    return f"{where}/{kwargs.get('db', 0)}"


def redis_client(
    url: str,
    *,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
) -> redis.Redis:
    """A client for ``url`` with short timeouts and few, fast retries; connects lazily.

    An unusable URL raises :class:`ConfigurationError` naming it (password masked).
    """
    try:
        return redis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=socket_timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
            health_check_interval=30,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"invalid Redis URL {mask_redis_url(url)!r}: {mask_urls_in(str(exc))} "
            "(expected redis://[:PASSWORD@]HOST:PORT/DB; set MEMTASKS_LOCK_REDIS_URL)"
        ) from None


def check_reachable(client: redis.Redis) -> None:
    """PING the server; :class:`LockUnavailable` naming it when it does not answer."""
    try:
        client.ping()
    except RedisError as exc:
        raise LockUnavailable(
            f"the lock server at {describe_client(client)} is not reachable: {exc}"
        ) from exc


class LockHold:
    """One attempt at a lock. Truthy when the lock was acquired (and is being held).

    Created by :meth:`RedisLockGate.hold`; the hold ends when that ``with`` block exits.
    """

    def __init__(self, gate: RedisLockGate, lock: Lock | None) -> None:
        self.gate = gate
        self.name = gate.name
        self._lock = lock
        self._state = threading.Lock()
        self._confirmed = time.monotonic()
        self._lost: str | None = None
        self._renewals = 0
        self._released = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def acquired(self) -> bool:
        return self._lock is not None

    def __bool__(self) -> bool:
        return self.acquired

    @property
    def renewals(self) -> int:
        """How many times the TTL has been reset (by the renew thread or :meth:`extend`)."""
        with self._state:
            return self._renewals

    @property
    def lost(self) -> bool:
        """True once the lock is known lost, or while held its last renewal is older than the TTL."""
        with self._state:
            if self._lost is not None:
                return True
            if not self.acquired or self._released:
                return False
            return time.monotonic() - self._confirmed > self.gate.ttl_s

    @property
    def renewing(self) -> bool:
        """True while the background renew thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def extend(self) -> None:
        """Reset the TTL now (compare-and-pexpire on the token).

        Raises :class:`LockLost` when the lock is no longer ours and
        :class:`LockUnavailable` when Redis does not answer.
        """
        lock = self._require_lock()
        try:
            lock.reacquire()
        except LockNotOwnedError:
            self._mark_lost("the lock expired or another holder took it")
            raise LockLost(f"lock {self.name!r} on {self.gate.server} is no longer held") from None
        except RedisError as exc:
            raise LockUnavailable(
                f"cannot renew lock {self.name!r}: the lock server at {self.gate.server} "
                f"is not reachable: {exc}"
            ) from exc
        self._confirm()

    def check(self) -> None:
        """Raise :class:`LockLost` unless the lock is still (believed) held.

        Cheap (no round trip): it reads what the renewals have observed. Call it between
        units of work of a long run.
        """
        self._require_lock()
        with self._state:
            reason = self._lost
            stale_s = time.monotonic() - self._confirmed
        if reason is None and stale_s > self.gate.ttl_s:
            reason = f"no renewal succeeded for {stale_s:.1f} s (TTL {self.gate.ttl_s} s)"
        if reason is not None:
            raise LockLost(f"lock {self.name!r} on {self.gate.server} was lost: {reason}")

    def owned(self) -> bool:
        """Ask Redis whether the key still holds this hold's token."""
        lock = self._require_lock()
        try:
            return bool(lock.owned())
        except RedisError as exc:
            raise LockUnavailable(f"the lock server at {self.gate.server} is not reachable: {exc}") from exc

    # ── internals ───────────────────────────────────────────────────────────

    def _require_lock(self) -> Lock:
        if self._lock is None:
            raise LockLost(f"lock {self.name!r} on {self.gate.server} was not acquired by this hold")
        if self._released:
            raise LockLost(f"lock {self.name!r} on {self.gate.server} was already released by this hold")
        return self._lock

    def _confirm(self) -> None:
        with self._state:
            self._confirmed = time.monotonic()
            self._renewals += 1

    def _mark_lost(self, reason: str) -> None:
        with self._state:
            if self._lost is None:
                self._lost = reason
        log.error("memtasks.locks: lock %r on %s lost: %s", self.name, self.gate.server, reason)

    def _start_renewal(self) -> None:
        interval = self.gate.renew_interval_s
        if not interval:
            return
        self._thread = threading.Thread(
            target=self._renew_loop, args=(interval,), name=f"memtasks-lock-renew:{self.name}", daemon=True
        )
        self._thread.start()

    def _renew_loop(self, interval: float) -> None:
        lock = self._lock
        assert lock is not None
        while not self._stop.wait(interval):
            try:
                lock.reacquire()
            except LockNotOwnedError:
                self._mark_lost("a renewal found the key gone or owned by another holder")
                return
            except RedisError as exc:
                log.warning(
                    "memtasks.locks: renewing lock %r on %s failed: %s", self.name, self.gate.server, exc
                )
                continue
            self._confirm()

    def _release(self) -> None:
        """Stop renewing, then compare-and-delete. Never raises: the TTL is the backstop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        lock = self._lock
        if lock is None or self._released:
            return
        self._released = True
        try:
            lock.release()
        except LockNotOwnedError:
            self._mark_lost("it had expired (or was taken) before the release")
        except RedisError as exc:
            log.warning(
                "memtasks.locks: releasing lock %r on %s failed (%s); it expires in at most %s s",
                self.name,
                self.gate.server,
                exc,
                self.gate.ttl_s,
            )


class RedisLockGate:
    """A named, fleet-wide, non-blocking lock with a TTL, renewed while held.

    ``ttl_s`` must be longer than the longest pause between renewals (a run's longest
    single statement when renewing explicitly); ``renew_interval_s`` defaults to a third
    of it, and ``0`` turns the renew thread off (renew with :meth:`LockHold.extend`).

    Usage::

        gate = RedisLockGate(redis_client(url), "memtasks:lock:consolidate", ttl_s=300)
        with gate.hold() as held:
            if not held:
                return  # another process holds it
            ...         # call held.check() between batches
    """

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        *,
        ttl_s: float = 300.0,
        renew_interval_s: float | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"invalid lock name {name!r}: must be a non-empty string")
        if not ttl_s > 0:
            raise ConfigurationError(f"invalid TTL {ttl_s!r} for lock {name!r}: must be > 0 seconds")
        if renew_interval_s is None:
            renew_interval_s = ttl_s / 3
        if renew_interval_s < 0 or renew_interval_s >= ttl_s:
            raise ConfigurationError(
                f"invalid renew interval {renew_interval_s!r} s for lock {name!r}: must be 0 "
                f"(no renew thread) or shorter than the TTL ({ttl_s} s)"
            )
        self.client = client
        self.name = name
        self.ttl_s = float(ttl_s)
        self.renew_interval_s = float(renew_interval_s)
        self.server = describe_client(client)

    @classmethod
    def from_url(
        cls, url: str, name: str, *, ttl_s: float = 300.0, renew_interval_s: float | None = None
    ) -> RedisLockGate:
        return cls(redis_client(url), name, ttl_s=ttl_s, renew_interval_s=renew_interval_s)

    @contextmanager
    def hold(self) -> Iterator[LockHold]:
        """Try once to take the lock; yield a :class:`LockHold` (falsy when someone else has it).

        An acquired lock is renewed in the background until the block exits, then
        released (compare-and-delete), also when the block raises.
        """
        lock = Lock(self.client, self.name, timeout=self.ttl_s, blocking=False, thread_local=False)
        try:
            acquired = bool(lock.acquire(blocking=False, token=secrets.token_hex(16)))
        except RedisError as exc:
            raise LockUnavailable(
                f"cannot take lock {self.name!r}: the lock server at {self.server} is not reachable: {exc}"
            ) from exc
        hold = LockHold(self, lock if acquired else None)
        if not acquired:
            log.debug("memtasks.locks: lock %r on %s is held elsewhere", self.name, self.server)
            yield hold
            return
        hold._start_renewal()
        try:
            yield hold
        finally:
            hold._release()

    def is_locked(self) -> bool:
        """Whether anyone holds the lock right now (informational; racy by nature)."""
        try:
            return bool(self.client.exists(self.name))
        except RedisError as exc:
            raise LockUnavailable(f"the lock server at {self.server} is not reachable: {exc}") from exc

    def __repr__(self) -> str:
        return f"RedisLockGate(name={self.name!r}, server={self.server!r}, ttl_s={self.ttl_s})"


__all__ = [
    "LockHold",
    "LockLost",
    "LockUnavailable",
    "RedisLockGate",
    "check_reachable",
    "describe_client",
    "mask_redis_url",
    "redis_client",
]
