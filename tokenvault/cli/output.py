"""How the ops CLI shows its results: JSON for scripts, plain ``key=value`` lines for people,
and a progress bar on a terminal."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import IO

__all__ = ["Progress", "as_json", "as_text"]


class Progress:
    """A one-line progress bar on a terminal; silent when the stream is not one (scripts)."""

    def __init__(self, stream: IO[str], total: int, label: str) -> None:
        self._stream, self._total, self._label = stream, total, label
        self._done = 0
        self._live = hasattr(stream, "isatty") and stream.isatty()

    def advance(self) -> None:
        self.update(self._done + 1, self._total)

    def update(self, done: int, total: int) -> None:
        self._done, self._total = done, total
        if self._live and total:
            filled = int(30 * done / total)
            self._stream.write(f"\r{self._label} [{'#' * filled}{'.' * (30 - filled)}] "
                               f"{done}/{total}")
            self._stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live and self._total:
            self._stream.write("\n")


def as_json(result: dict) -> str:
    return json.dumps(result, indent=2, default=_json_default) + "\n"


def as_text(result: dict) -> str:
    """Plain text: one line per item, key=value, easy to read and to grep."""
    lines = []
    for key, value in result.items():
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and "versions" in item:
                    lines.append(f"tenant {item['tenant_id']}")
                    lines += ["  " + _pairs(v) for v in item["versions"]]
                else:
                    lines.append(_pairs(item) if isinstance(item, dict) else str(item))
        elif isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {_json_default(v) if isinstance(v, datetime) else v}"
                      for k, v in value.items()]
        else:
            lines.append(f"{key}: {_json_default(value) if isinstance(value, datetime) else value}")
    return "\n".join(lines) + "\n"


def _pairs(item: dict) -> str:
    return "  ".join(f"{k}={_json_default(v) if isinstance(v, datetime) else v}"
                     for k, v in item.items())


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return str(value)
