"""The dev host's NCRONTAB reading, checked against schedules from the Functions docs."""

from datetime import datetime, timezone

import pytest

from tokenvault.dev.ncrontab import Schedule

T = datetime(2026, 11, 22, 13, 47, 12, tzinfo=timezone.utc)  # a Sunday


@pytest.mark.parametrize("expression, expected", [
    ("0 */5 * * * *", datetime(2026, 11, 22, 13, 50, 0, tzinfo=timezone.utc)),
    ("0 0 * * * *", datetime(2026, 11, 22, 14, 0, 0, tzinfo=timezone.utc)),
    ("0 0 */6 * * *", datetime(2026, 11, 22, 18, 0, 0, tzinfo=timezone.utc)),
    ("*/15 * * * * *", datetime(2026, 11, 22, 13, 47, 15, tzinfo=timezone.utc)),
    ("0 30 9 * * 1-5", datetime(2026, 11, 23, 9, 30, 0, tzinfo=timezone.utc)),
    ("0 30 9 * * Mon-Fri", datetime(2026, 11, 23, 9, 30, 0, tzinfo=timezone.utc)),
    ("0 0 0 1 jan *", datetime(2027, 1, 1, 0, 0, 0, tzinfo=timezone.utc)),
    ("0 0 12 29 2 *", datetime(2028, 2, 29, 12, 0, 0, tzinfo=timezone.utc)),
    ("5,40 47 13 * * *", datetime(2026, 11, 22, 13, 47, 40, tzinfo=timezone.utc)),
])
def test_next_occurrence(expression, expected):
    schedule = Schedule.parse(expression)
    assert schedule.next_after(T) == expected
    assert schedule.matches(expected)


@pytest.mark.parametrize("expression", ["* * * * *", "60 * * * * *", "0 0 25 * * *",
                                        "*/0 * * * * *", "a b c d e f"])
def test_bad_expressions(expression):
    with pytest.raises(ValueError):
        Schedule.parse(expression)
