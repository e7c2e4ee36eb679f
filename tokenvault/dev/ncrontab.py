"""NCRONTAB, the six-field cron dialect of Azure Functions timers (seconds first).

Only the dev host uses this, to fire timer functions on the schedule the real host would. It
supports what Functions documents: ``*``, numbers, ranges ``a-b``, lists ``a,b``, steps
``*/n`` and ``a-b/n``, and three-letter month and weekday names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Schedule"]

_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_DAYS = "sun mon tue wed thu fri sat".split()
# (low, high, names) per field: second, minute, hour, day of month, month, day of week.
_FIELDS = ((0, 59, None), (0, 59, None), (0, 23, None), (1, 31, None), (1, 12, _MONTHS),
           (0, 6, _DAYS))


@dataclass(frozen=True)
class Schedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> "Schedule":
        parts = expression.split()
        if len(parts) != 6:
            raise ValueError("an NCRONTAB expression has six fields")
        return cls(*(_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)))

    def matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7
        return (moment.second in self.seconds and moment.minute in self.minutes
                and moment.hour in self.hours and moment.day in self.days
                and moment.month in self.months and weekday in self.weekdays)

    def next_after(self, moment: datetime) -> datetime:
        """The first matching whole second strictly after ``moment`` (within ~4 years)."""
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = candidate + timedelta(days=366 * 4)
        while candidate < limit:
            if candidate.month not in self.months:
                candidate = (candidate.replace(day=1, hour=0, minute=0, second=0)
                             + timedelta(days=32)).replace(day=1)
                continue
            weekday = (candidate.weekday() + 1) % 7
            if candidate.day not in self.days or weekday not in self.weekdays:
                candidate = candidate.replace(hour=0, minute=0, second=0) + timedelta(days=1)
                continue
            if candidate.hour not in self.hours:
                candidate = candidate.replace(minute=0, second=0) + timedelta(hours=1)
                continue
            if candidate.minute not in self.minutes:
                candidate = candidate.replace(second=0) + timedelta(minutes=1)
                continue
            if candidate.second not in self.seconds:
                candidate += timedelta(seconds=1)
                continue
            return candidate
        raise ValueError("the schedule never fires")


def _field(text: str, low: int, high: int, names: list[str] | None) -> frozenset[int]:
    values: set[int] = set()
    for item in text.lower().split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad step in {text!r}")
        if span == "*":
            start, end = low, high
        elif "-" in span:
            first, last = span.split("-", 1)
            start, end = _value(first, names), _value(last, names)
        else:
            start = _value(span, names)
            end = high if step_text else start
        if not (low <= start <= end <= high):
            raise ValueError(f"{text!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(text: str, names: list[str] | None) -> int:
    if names and text[:3] in names:
        return names.index(text[:3]) + (1 if names is _MONTHS else 0)
    return int(text)
