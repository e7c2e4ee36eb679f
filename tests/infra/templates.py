"""Reading the templates for the tests: the ARM JSON as data, the Bicep by a small scanner.

The Bicep CLI cannot be installed here, so the Bicep side is read with just enough of its
grammar for what the tests compare: resource declarations and their blocks, parameters with
their decorators, outputs, and ``key: value`` lines inside a block.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
ARM_PATH = INFRA / "azuredeploy.json"
BICEP_FILES = sorted([INFRA / "main.bicep", *(INFRA / "app").glob("*.bicep")])

_RESOURCE = re.compile(r"^resource (\w+) '([^'@]+)@([^']+)'( existing)? = (?:if \((.*)\) )?\{", re.M)
_PARAM = re.compile(r"^param (\w+) (\w+)(?: = (.+))?$", re.M)
_OUTPUT = re.compile(r"^output (\w+) \w+ = ", re.M)


@dataclass
class BicepResource:
    symbol: str
    type: str
    api_version: str
    existing: bool
    condition: str | None
    body: str
    file: Path

    def value(self, key: str) -> str | None:
        """The raw right-hand side of the first ``key: value`` line in this block."""
        match = re.search(rf"^\s*{re.escape(key)}: (.+)$", self.body, re.M)
        return match.group(1).strip() if match else None


@dataclass
class BicepParam:
    name: str
    type: str
    default: str | None
    decorators: dict[str, str] = field(default_factory=dict)


def strip_comments(text: str) -> str:
    """Drop ``//`` and ``/* */`` comments, leaving strings (which hold URLs) intact."""
    out, i, quoted = [], 0, False
    while i < len(text):
        c = text[i]
        if quoted:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == "'":
                quoted = False
        elif c == "'":
            quoted = True
            out.append(c)
        elif text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _block(text: str, start: int) -> str:
    """The text from the ``{`` at ``start`` to its matching ``}``."""
    depth, quoted = 0, False
    for i in range(start, len(text)):
        c = text[i]
        if c == "'" and text[i - 1] != "\\":
            quoted = not quoted
        elif not quoted and c == "{":
            depth += 1
        elif not quoted and c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
    raise ValueError("unbalanced braces")


def bicep_text(path: Path) -> str:
    return strip_comments(path.read_text(encoding="utf-8"))


def bicep_resources() -> list[BicepResource]:
    found = []
    for path in BICEP_FILES:
        text = bicep_text(path)
        for m in _RESOURCE.finditer(text):
            found.append(BicepResource(m.group(1), m.group(2), m.group(3), bool(m.group(4)),
                                       m.group(5), _block(text, m.end() - 1), path))
    return found


def bicep_params(path: Path = INFRA / "main.bicep") -> dict[str, BicepParam]:
    text = bicep_text(path)
    params = {}
    for m in _PARAM.finditer(text):
        # Decorators are the lines right above the declaration, up to a blank line.
        above = text[:m.start()].rstrip("\n").split("\n\n")[-1]
        decorators = dict(re.findall(r"@(\w+)\(((?:\[[^\]]*\])|[^)]*)\)", above, re.S))
        params[m.group(1)] = BicepParam(m.group(1), m.group(2), m.group(3), decorators)
    return params


def bicep_outputs(path: Path = INFRA / "main.bicep") -> list[str]:
    return _OUTPUT.findall(bicep_text(path))


def bicep_object(text: str, key: str) -> dict[str, str]:
    """The ``name: value`` lines directly inside the object literal that follows ``key``."""
    start = re.search(rf"{re.escape(key)}[^{{]*\{{", text)
    assert start, f"no object after {key}"
    body = _block(text, start.end() - 1)
    return dict(re.findall(r"^\s{2,}(\w+): (.+)$", body, re.M))


def bicep_literal(value: str) -> object:
    """A Bicep literal as Python (strings, ints, bools, {}); anything else stays a string."""
    value = value.strip()
    if value.startswith("'") and value.endswith("'"):
        return value[1:-1]
    if value in ("true", "false"):
        return value == "true"
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if value == "{}":
        return {}
    return value


def arm() -> dict:
    return json.loads(ARM_PATH.read_text(encoding="utf-8"))


def arm_resources(template: dict | None = None) -> list[dict]:
    return (template or arm())["resources"]


def arm_only(type_: str, template: dict | None = None) -> dict:
    matches = [r for r in arm_resources(template) if r["type"] == type_]
    assert len(matches) == 1, f"expected one {type_}, found {len(matches)}"
    return matches[0]


def scope_type(arm_scope: str) -> str:
    """``format('Microsoft.Storage/storageAccounts/{0}/tableServices/{1}/tables/{2}', ...)``
    → ``Microsoft.Storage/storageAccounts/tableServices/tables``."""
    path = re.match(r"\[format\('([^']+)'", arm_scope).group(1)
    parts = path.split("/")
    return "/".join([parts[0], *parts[1::2]])
