"""How a setting's text becomes a value: the environment as the settings read it, and one
reader for each kind of value (GUID, GUID list, app callers, https URL, bounded whole number,
table name, NCRONTAB expression, duration).

These readers know no setting's name: each is given the name only to put it in the
``SettingError`` it raises, whose message is one line and never holds the value (a setting may
be a secret or a connection string). Which variables make which setting, their defaults and
the settings read from several variables together (the client credential, a storage
connection) are tokenvault/settings.py's; it was split here so that file reads as the list of
settings. Names keep their leading underscore: they are the settings' parts, not the package's
API. ``parse_duration`` alone is public (tokenvault.settings re-exports it): it reads a duration
without a setting's name or default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import urlsplit

from .errors import SettingError
from .model import AppCaller, is_valid_id

__all__ = ["parse_duration"]

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}\Z")
_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?\Z")


class _Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str) -> str | None:
        value = self._environ.get(name)
        return value.strip() if value and value.strip() else None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise SettingError(name, "missing")
        return value


def _https_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise SettingError(name, "must be an https URL")
    return value.rstrip("/")


def _guid(name: str, value: str) -> str:
    value = value.lower()
    if not is_valid_id(value):
        raise SettingError(name, "must be a GUID")
    return value


def _guid_set(name: str, value: str | None) -> frozenset[str]:
    if not value:
        return frozenset()
    return frozenset(_guid(name, item.strip()) for item in value.split(",") if item.strip())


def _callers(name: str, value: str | None) -> frozenset[AppCaller]:
    """``<app id>@<home tenant id>`` entries. A bare app id is refused rather than read as "from
    any tenant": that reading is the hole a hostile customer tenant's admin walks through."""
    callers = set()
    for item in (value or "").split(","):
        item = item.strip().lower()
        if not item:
            continue
        app_id, at, tenant_id = item.partition("@")
        if not at:
            raise SettingError(name, "each entry must be <app id>@<home tenant id>: an app id "
                                     "alone would accept that app's tokens from any tenant")
        if not (is_valid_id(app_id) and is_valid_id(tenant_id)):
            raise SettingError(name, "each entry must be <app id>@<home tenant id>, both GUIDs")
        callers.add(AppCaller(app_id, tenant_id))
    return frozenset(callers)


def _int(name: str, value: str | None, default: int, *, low: int, high: int,
         unit: str = "seconds") -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingError(name, f"must be a whole number of {unit}") from None
    if not low <= number <= high:
        raise SettingError(name, f"must be between {low} and {high}")
    return number


def _table(name: str, value: str) -> str:
    if not _TABLE_NAME.match(value):
        raise SettingError(name, "must be a table name: a letter, then 2 to 62 letters or digits")
    return value


def _ncrontab(name: str, value: str) -> str:
    # The Functions host parses the expression itself; we only catch the common mistake of a
    # five-field Unix cron line, which NCRONTAB (seconds first) reads differently.
    if len(value.split()) != 6 or not re.fullmatch(r"[0-9*/,\- A-Za-z]+", value):
        raise SettingError(name, "must be a six-field NCRONTAB expression (seconds first)")
    return value


def parse_duration(value: str) -> timedelta:
    """Seconds (``"3600"``) or an ISO 8601 duration without years or months (``"P7D"``)."""
    if value.isdigit():
        return timedelta(seconds=int(value))
    match = _DURATION.match(value)
    if not match or value in ("P", "PT") or value.endswith("T"):
        raise ValueError(value)
    parts = {k: int(v) for k, v in match.groupdict().items() if v}
    return timedelta(**parts)


def _duration(name: str, value: str | None, default: timedelta) -> timedelta:
    if value is None:
        return default
    try:
        duration = parse_duration(value)
    except ValueError:
        raise SettingError(name, "must be seconds or an ISO 8601 duration such as P7D") from None
    if duration <= timedelta(0):
        raise SettingError(name, "must be positive")
    return duration
