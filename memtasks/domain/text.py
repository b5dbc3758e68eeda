"""Text a database column can hold: no NUL character and no lone surrogate.

PostgreSQL refuses a NUL in text (``A string literal cannot contain NUL``) and both
backends' drivers refuse a lone surrogate (it has no UTF-8 form). Values that reach a
column are checked here first, so such input fails as a validation error naming the field
instead of a driver error inside a transaction.
"""

from __future__ import annotations

NUL = "\x00"


def unstorable(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (``contains a NUL character``, ``contains a
    lone surrogate (not valid UTF-8)``), or None when it can."""
    if NUL in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid UTF-8)"
    return None


def shorten(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for error messages and logs."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
