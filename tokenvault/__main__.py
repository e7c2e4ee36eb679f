"""``python -m tokenvault``: the ops CLI (see tokenvault/ops.py)."""

from .ops import main

raise SystemExit(main())
