"""Secrets out of URLs and messages: the one masking helper of every log line, error and report.

A URL's password (``scheme://user:PASSWORD@host``) and the values of query parameters that
carry credentials (``?password=…``, ``sslpassword``, ``token``, ``secret``, ``…key``) become
``***``. A password holding an unescaped ``@`` or ``/`` is masked whole: the user information
runs up to the *last* ``@`` before the query, so no tail of it is ever shown as a host.
:func:`mask_urls_in` does the same to every URL inside a free text (an exception's message)
and to libpq-style ``password=…`` pairs.

Stdlib only; it never raises, whatever the input.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

_SENSITIVE_KEY = re.compile(r"pass|pwd|secret|token|key|auth|credential|signature", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_PASSWORD_PAIR = re.compile(
    r"\b((?:ssl)?pass(?:word|wd)?|pwd)(\s*=\s*)('[^']*'|\"[^\"]*\"|[^\s,;&]+)", re.IGNORECASE
)


def mask_url(url: str) -> str:
    """``url`` with its password and credential-carrying query values replaced by ``***``.

    A string that is no well-formed ``scheme://…`` (an empty or odd scheme, no scheme at
    all) is masked the same way when it holds ``user:password@``: a typo must not print a
    password.
    """
    if not isinstance(url, str):
        return "<not a URL>"
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    prefix = f"{head}{sep}"
    cut = len(rest)
    for mark in ("?", "#"):
        at = rest.find(mark)
        if 0 <= at < cut:
            cut = at
    location, tail = rest[:cut], rest[cut:]
    userinfo, at_sign, after = location.rpartition("@")
    if at_sign and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        location = f"{user}:{MASK}@{after}"
    return f"{prefix}{location}{_mask_query(tail)}"


def _mask_query(tail: str) -> str:
    """``?a=1&password=x#frag`` → ``?a=1&password=***#frag``."""
    if not tail.startswith("?"):
        return tail
    query, hash_sign, fragment = tail[1:].partition("#")
    pairs = []
    for pair in query.split("&"):
        key, equals, value = pair.partition("=")
        if equals and value and _SENSITIVE_KEY.search(unquote(key)):
            pair = f"{key}={MASK}"
        pairs.append(pair)
    return "?" + "&".join(pairs) + hash_sign + fragment


def mask_urls_in(text: str) -> str:
    """``text`` with every URL in it masked (:func:`mask_url`) and ``password=…`` pairs hidden."""
    masked = _URL_IN_TEXT.sub(lambda match: mask_url(match.group(0)), text)
    return _PASSWORD_PAIR.sub(lambda match: f"{match.group(1)}{match.group(2)}{MASK}", masked)


__all__ = ["MASK", "mask_url", "mask_urls_in"]
