"""``local.settings.json``: the app settings of a local run, read the way Core Tools reads them.

The dev host and the ops CLI put the file's ``Values`` into the environment before the settings
are read (tokenvault/settings.py), so a local run and Azure read the same variables. Split from
settings.py: this is where a local run's settings come from, not what any setting means.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

from .errors import SettingError

__all__ = ["LOCAL_SETTINGS", "local_settings_values", "apply_local_settings"]

#: The file of a Functions project folder whose ``Values`` a local run reads as app settings.
LOCAL_SETTINGS = "local.settings.json"


def local_settings_values(folder: Path) -> dict[str, str]:
    """``Values`` of ``folder/local.settings.json`` (empty without the file).

    :raises SettingError: the file is not JSON, or its values are encrypted (``func settings
        encrypt``), which only Core Tools can read.
    """
    import json

    path = Path(folder) / LOCAL_SETTINGS
    if not path.is_file():
        return {}
    try:
        local = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SettingError(LOCAL_SETTINGS, "not readable as JSON") from None
    if local.get("IsEncrypted"):
        raise SettingError(LOCAL_SETTINGS, "its values are encrypted; run 'func settings decrypt'")
    return {str(k): str(v) for k, v in (local.get("Values") or {}).items()}


def apply_local_settings(folder: Path, environ: MutableMapping[str, str]) -> list[str]:
    """Put ``local.settings.json``'s values into ``environ`` the way a local Functions host
    does: a variable already set wins. Returns the names it set."""
    added = []
    for name, value in local_settings_values(folder).items():
        if name not in environ:
            environ[name] = value
            added.append(name)
    return added
