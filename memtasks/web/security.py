"""Who may use the console, and how its actions are protected (as for Flower, and more).

- **Authentication**: with ``MEMTASKS_WEB_BASIC_AUTH`` (``user:password`` pairs) every request
  must carry one of them (HTTP basic auth, compared in constant time). Without it the console
  answers loopback clients only, and ``memtasks web`` refuses to listen beyond loopback unless
  told ``--allow-unauthenticated``.
- **Cross-site requests**: every request that changes something (``POST``) must carry the
  anti-forgery token — a random value the console sets as a ``SameSite=Strict`` cookie and
  puts in its forms and in the ``X-CSRF-Token`` header of its htmx requests — and must not
  come from another site (``Sec-Fetch-Site``, ``Origin``). A script gets a token from
  ``GET /api/session``.
- **Read-only**: ``MEMTASKS_WEB_READ_ONLY`` refuses every action (403) and hides its buttons.
- **Secrets**: the console shows job rows, never settings or connection URLs, and never
  echoes the basic-auth value.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from memtasks.domain.urls import is_loopback

CSRF_COOKIE = "memtasks_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def parse_basic_auth(value: str) -> dict[str, str]:
    """``user:password`` pairs, comma-separated, neither part empty: user → password."""
    users: dict[str, str] = {}
    for entry in value.split(","):
        user, colon, password = entry.partition(":")
        if not (colon and user.strip() and password):
            raise ValueError(
                "MEMTASKS_WEB_BASIC_AUTH must be user:password (comma-separated pairs), neither part empty"
            )
        users[user.strip()] = password
    return users


def listen_problem(address: str, users: Mapping[str, str] | None) -> str | None:
    """Why the console must not listen on ``address`` with these users, or None."""
    if users or is_loopback(address):
        return None
    return (
        f"the console would listen on {address or 'every interface'} without authentication — set"
        " MEMTASKS_WEB_BASIC_AUTH=user:password, listen on 127.0.0.1, or pass --allow-unauthenticated"
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """Who the request is from (``actor``), or why it is refused (``status``, ``reason``)."""

    actor: str | None
    status: int = 200
    reason: str = ""


def authenticate(
    headers: Mapping[str, str], client_host: str | None, users: Mapping[str, str] | None
) -> Verdict:
    if users:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", ""
            expected = users.get(user)
            # Compare even for an unknown user, so the time taken tells nothing.
            if hmac.compare_digest((expected or "\0").encode(), password.encode()) and expected is not None:
                return Verdict(actor=user)
        return Verdict(actor=None, status=401, reason="authentication required")
    if client_host is not None and is_loopback(client_host):
        return Verdict(actor=f"anonymous@{client_host}")
    return Verdict(
        actor=None,
        status=403,
        reason="this console has no authentication and answers loopback clients only",
    )


def new_token() -> str:
    return secrets.token_urlsafe(32)


def cross_site(headers: Mapping[str, str]) -> bool:
    """The browser says the request comes from another site."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in {"same-origin", "none"}:
        return True
    origin = headers.get("origin")
    if origin and origin != "null":
        host = headers.get("host", "")
        return origin.split("://", 1)[-1].rstrip("/") != host
    return origin == "null"


def token_matches(cookie: str | None, given: str | None) -> bool:
    return bool(cookie and given) and hmac.compare_digest(str(cookie), str(given))


__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "Verdict",
    "authenticate",
    "cross_site",
    "listen_problem",
    "new_token",
    "parse_basic_auth",
    "token_matches",
]
