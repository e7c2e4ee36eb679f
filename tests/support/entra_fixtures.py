"""Fixtures of this local part (filled in by its module)."""
