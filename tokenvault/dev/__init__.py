"""Development-only code: the dev host that serves ``function_app`` without Core Tools, its
NCRONTAB parser, and the Azurite runner. Never deployed (``.funcignore``)."""
