"""TokenVault: OAuth On-Behalf-Of refresh tokens kept encrypted under per-tenant keys."""

__version__ = "0.1.0"
