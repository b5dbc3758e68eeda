"""Checks of the broker and Redis URLs in the settings, so a typo fails at start with the
variable's name instead of deep inside kombu or redis-py at the first connection.

Messages never repeat the URL: it may hold a password.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

BROKER_SCHEMES = frozenset(
    {"redis", "rediss", "redis+socket", "sentinel", "amqp", "amqps", "pyamqp", "memory"}
)
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


def _split(url: object, schemes: frozenset[str]) -> SplitResult:
    if not isinstance(url, str) or not url.strip():
        raise ValueError("must be a URL such as redis://HOST:PORT/DB")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (parsing the port raises ValueError when it is no number)
    except ValueError as exc:
        raise ValueError(f"is not a valid URL: {exc}") from None
    scheme = url.split(":", 1)[0] if ":" in url else ""  # as written: clients want lower case
    if scheme not in schemes:
        expected = ", ".join(f"{s}://" for s in sorted(schemes))
        raise ValueError(f"has scheme {scheme or '(none)'!r}:// — expected one of {expected}")
    return parts


def _check_redis_db(parts: SplitResult) -> None:
    if parts.scheme in {"redis", "rediss"}:
        db = parts.path.strip("/")
        if db and not (db.isascii() and db.isdigit()):
            raise ValueError(f"names Redis database {db!r}: expected a number such as /0")


def check_broker_url(url: object) -> str:
    """A Celery broker URL (Redis or RabbitMQ; ``;`` separates failover URLs); ValueError saying
    what is wrong otherwise."""
    if not isinstance(url, str):
        raise ValueError("must be a URL such as redis://HOST:PORT/DB")
    for one in url.split(";"):
        _check_redis_db(_split(one, BROKER_SCHEMES))
    return url


def check_redis_url(url: object) -> str:
    """A Redis URL (``redis://``, ``rediss://``, ``unix://``); ValueError saying what is wrong."""
    _check_redis_db(_split(url, REDIS_SCHEMES))
    assert isinstance(url, str)
    return url


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP, ``[IPv6]`` or ``localhost``) is reachable from this host only."""
    host = address.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '' (every interface), 0.0.0.0, a host name: not loopback


__all__ = ["BROKER_SCHEMES", "REDIS_SCHEMES", "check_broker_url", "check_redis_url", "is_loopback"]
