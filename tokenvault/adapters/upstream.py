"""Rules shared by every adapter that talks to an upstream service over HTTP.

``Retry-After`` is read here and nowhere else: RFC 9110 section 10.2.3 allows either a number
of seconds or an HTTP date. A fraction of a second is rounded up (a decimal is not RFC syntax,
but some services send one); a date is turned into the seconds left until it. What cannot be
read, or is absent, is the caller's default. The result is at least 1 s and at most an hour,
so a hostile or broken header can neither make us spin nor park a batch for days.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

__all__ = ["retry_after", "retry_after_of", "MAX_RETRY_AFTER"]

MAX_RETRY_AFTER = 3600


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def retry_after(value: str | None, *, default: int,
                now: Callable[[], datetime] = _utc_now) -> int:
    """Seconds to wait, from a ``Retry-After`` header value (None: the header was absent)."""
    seconds = _parse(value.strip(), now) if isinstance(value, str) and value.strip() else None
    if seconds is None:
        seconds = default
    return min(MAX_RETRY_AFTER, max(1, seconds))


def retry_after_of(source: Any, *, default: int, now: Callable[[], datetime] = _utc_now) -> int:
    """``retry_after`` of a response (``requests`` or azure-core) or of an azure-core error
    carrying one; anything without headers gives ``default``."""
    response = getattr(source, "response", source)
    headers = getattr(response, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    return retry_after(value, default=default, now=now)


def _parse(value: str, now: Callable[[], datetime]) -> int | None:
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        return math.ceil(number) if math.isfinite(number) and number >= 0 else None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # RFC 9110 dates are GMT
        moment = moment.replace(tzinfo=timezone.utc)
    return math.ceil((moment - now()).total_seconds())
