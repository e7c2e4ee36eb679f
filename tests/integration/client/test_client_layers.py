"""The client and the samples stand apart from the server, read from their import statements:

- ``tokenvault_client`` imports the standard library, ``azure.core`` (its one dependency) and
  itself — never the server, ``azure.identity``, ``msal``, ``requests`` or ``jwt``;
- the samples (their tests included) never import the server (``tokenvault``,
  ``function_app``) or the repository's tests: they run where only the client is installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.unit.test_layers import imports_of

ROOT = Path(__file__).resolve().parents[3]
CLIENT = ROOT / "clients" / "python" / "tokenvault_client"
SAMPLES = ROOT / "samples"


def modules(folder: Path, base: Path) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(base).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        found.append((".".join(parts), path))
    return found


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("module, path", modules(CLIENT, CLIENT.parent),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_the_client_imports_only_the_standard_library_and_azure_core(module, path):
    imported = imports_of(path.read_text(), module, is_package=path.name == "__init__.py")
    foreign = {name for name in imported
               if top(name) not in sys.stdlib_module_names and top(name) != "tokenvault_client"
               and not (name == "azure" or name.startswith("azure.core"))}
    assert not foreign, f"{module} imports {sorted(foreign)}"


@pytest.mark.parametrize("module, path", modules(SAMPLES, SAMPLES),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_the_samples_never_import_the_server_or_the_repositorys_tests(module, path):
    imported = imports_of(path.read_text(), module, is_package=path.name == "__init__.py")
    assert not {n for n in imported if top(n) in ("tokenvault", "function_app", "tests")}, module


def test_both_lists_are_not_empty():
    assert len(modules(CLIENT, CLIENT.parent)) >= 10 and len(modules(SAMPLES, SAMPLES)) >= 10
