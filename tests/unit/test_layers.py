"""The layer rule (docs/design.md "Layers"), read from the import statements of every module.

- The core knows nothing of Azure, Entra or HTTP: it imports the standard library,
  ``cryptography`` (the envelope's AES-GCM) and other core modules, nothing else.
- Adapters may import the core and each other, never an entry point or development code.
- Nothing that is deployed imports ``tokenvault.dev`` (it is left out of the package by
  ``.funcignore``).

Every module of the package must be in exactly one layer below, so a new module is placed
deliberately rather than by accident. Function-level imports count as much as top-level ones.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tokenvault"

CORE = {"tokenvault", "tokenvault.errors", "tokenvault.model", "tokenvault.ports",
        "tokenvault.sensitive", "tokenvault.envelope", "tokenvault.scopes", "tokenvault.clouds",
        "tokenvault.access_cache", "tokenvault.singleflight", "tokenvault.vault",
        "tokenvault.record_keeping", "tokenvault.sweep_step", "tokenvault.sweep",
        "tokenvault.sweep_messages", "tokenvault.sweep_work", "tokenvault.maintenance",
        "tokenvault.settings", "tokenvault.setting_values", "tokenvault.local_settings",
        "tokenvault.observe", "tokenvault.audit", "tokenvault.inventory"}
ENTRY_POINTS = {"tokenvault.bootstrap", "tokenvault.http", "tokenvault.openapi",
                "tokenvault.__main__", "function_app"}
ENTRY_PACKAGES = ("tokenvault.cli",)
ADAPTER_PACKAGE = "tokenvault.adapters"
DEV_PACKAGE = "tokenvault.dev"
#: What the core may import besides itself and the standard library.
CORE_THIRD_PARTY = {"cryptography"}


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imports_of(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports, relative imports resolved against ``module``."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from . import logfields` imports a module, not a name.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def layer_of(module: str) -> str:
    if module in CORE:
        return "core"
    if module in ENTRY_POINTS or module.startswith(ENTRY_PACKAGES):
        return "entry"
    if module == ADAPTER_PACKAGE or module.startswith(ADAPTER_PACKAGE + "."):
        return "adapter"
    if module == DEV_PACKAGE or module.startswith(DEV_PACKAGE + "."):
        return "dev"
    return "unknown"


def is_ours(name: str) -> bool:
    return name == "tokenvault" or name.startswith("tokenvault.") or name == "function_app"


def known_module(name: str) -> str:
    """The longest prefix of an imported name that is one of our modules (a name imported
    from a module counts as the module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def violations(module: str, imported: set[str]) -> list[str]:
    layer = layer_of(module)
    found = []
    for name in sorted(imported):
        top = name.split(".")[0]
        if is_ours(name):
            target = layer_of(known_module(name) or name)
            if layer == "core" and target != "core":
                found.append(f"{module} (core) imports {name} ({target})")
            if layer == "adapter" and target in ("entry", "dev"):
                found.append(f"{module} (adapter) imports {name} ({target})")
            if layer in ("core", "adapter", "entry") and target == "dev":
                found.append(f"{module} ({layer}, deployed) imports {name} (dev)")
        elif layer == "core" and top not in sys.stdlib_module_names and top not in CORE_THIRD_PARTY:
            found.append(f"{module} (core) imports {name}")
    return sorted(set(found))


def sources() -> dict[str, tuple[str, bool]]:
    files = [*PACKAGE.rglob("*.py"), ROOT / "function_app.py"]
    return {module_name(path): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
            for path in files if "__pycache__" not in path.parts}


MODULES = sources()


def test_every_module_has_a_layer():
    assert [m for m in sorted(MODULES) if layer_of(m) == "unknown"] == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_keeps_the_layer_rule(module):
    source, is_package = MODULES[module]
    assert violations(module, imports_of(source, module, is_package=is_package)) == []


# --- the rule itself can fail ----------------------------------------------------------------

@pytest.mark.parametrize("module, source, expected", [
    ("tokenvault.vault", "import azure.functions as func\n",
     "tokenvault.vault (core) imports azure.functions"),
    ("tokenvault.sweep", "def f():\n    import msal\n", "tokenvault.sweep (core) imports msal"),
    ("tokenvault.vault", "from .adapters.entra import EntraIdentityProvider\n",
     "tokenvault.vault (core) imports tokenvault.adapters.entra (adapter)"),
    ("tokenvault.model", "import requests\n", "tokenvault.model (core) imports requests"),
    ("tokenvault.observe", "from opentelemetry import trace\n",
     "tokenvault.observe (core) imports opentelemetry"),
    ("tokenvault.adapters.entra", "from ..bootstrap import compose\n",
     "tokenvault.adapters.entra (adapter) imports tokenvault.bootstrap (entry)"),
    ("tokenvault.http", "from .dev import devhost\n",
     "tokenvault.http (entry, deployed) imports tokenvault.dev (dev)"),
])
def test_a_forbidden_import_is_reported(module, source, expected):
    assert expected in violations(module, imports_of(source, module))


def test_the_core_may_use_the_standard_library_cryptography_and_itself():
    source = ("import json\nfrom cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
              "from .errors import VaultError\n")
    assert violations("tokenvault.envelope", imports_of(source, "tokenvault.envelope")) == []


# --- the local run path (scripts/run) stands without the tests ------------------------------

def imported_by(path: Path, module: str) -> set[str]:
    return imports_of(path.read_text(encoding="utf-8"), module,
                      is_package=path.name == "__init__.py")


def run_path_closure(start: str) -> set[str]:
    """Every module of ours (tokenvault, scripts, function_app, tests) reachable by import from
    ``start``, following function-level imports too."""
    def path_of(name: str) -> Path | None:
        base = ROOT.joinpath(*name.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        path = path_of(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        for imported in imported_by(path, name):
            if imported.split(".")[0] in ("tokenvault", "scripts", "function_app", "tests"):
                parts = imported.split(".")
                # `from x import y` names a module or a name in it: follow whichever exists
                todo += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return seen


def test_nothing_in_the_package_imports_the_tests():
    offenders = sorted(m for m, (source, pkg) in MODULES.items()
                       if any(i == "tests" or i.startswith("tests.")
                              for i in imports_of(source, m, is_package=pkg)))
    assert offenders == []


def test_scripts_run_needs_nothing_from_the_tests():
    reached = run_path_closure("scripts.local_run")
    assert "scripts.demo_idp" in reached and "tokenvault.dev.entra_fake" in reached
    assert sorted(m for m in reached if m == "tests" or m.startswith("tests.")) == []


def test_the_closure_would_see_an_import_of_the_tests(tmp_path, monkeypatch):
    # The check above can fail: a module that imports tests.support is reported.
    fake_root = tmp_path
    (fake_root / "scripts").mkdir()
    (fake_root / "scripts" / "__init__.py").write_text("")
    (fake_root / "scripts" / "go.py").write_text("from tests.support.thing import X\n")
    (fake_root / "tests" / "support").mkdir(parents=True)
    (fake_root / "tests" / "__init__.py").write_text("")
    (fake_root / "tests" / "support" / "__init__.py").write_text("")
    (fake_root / "tests" / "support" / "thing.py").write_text("X = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    assert "tests.support.thing" in run_path_closure("scripts.go")
