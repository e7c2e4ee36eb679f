"""What the ops CLI prints: a progress bar only on a terminal, readable text otherwise."""

import io
import json
from datetime import datetime, timezone

from tokenvault.cli.output import Progress, as_json, as_text

WHEN = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_and_ends_its_line():
    screen = Terminal()
    with Progress(screen, 4, "rotating") as progress:
        progress.advance()
        progress.advance()
    assert "\rrotating [###############...............] 2/4" in screen.getvalue()
    assert screen.getvalue().endswith("\n")


def test_no_progress_bar_when_the_output_is_a_pipe():
    piped = io.StringIO()
    with Progress(piped, 4, "rotating") as progress:
        progress.advance()
    assert piped.getvalue() == ""


def test_text_shows_tenants_with_their_versions_and_utc_times():
    text = as_text({"tenants": [{"tenant_id": "t1", "versions": [
        {"version": "v1", "created": WHEN, "records": 0}]}]})
    assert text == "tenant t1\n  version=v1  created=2026-11-23T08:00:00Z  records=0\n"


def test_json_is_parseable_with_utc_times():
    assert json.loads(as_json({"at": WHEN})) == {"at": "2026-11-23T08:00:00Z"}
