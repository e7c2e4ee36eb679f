"""The version of tokenvault-client (also the package version in pyproject.toml)."""

VERSION = "0.1.0"
