"""``python -m tokenvault``: the ops CLI (``tokenvault.cli``)."""

from .cli import main

raise SystemExit(main())
