"""A stand-in ``az`` for tests: answers from recorded outputs, as the Azure CLI would print them.

Put on PATH (as ``az``, through a small shell wrapper) with ``FAKE_AZ_RECORDINGS`` naming a JSON
file ``{"<command words>": {"json": <document>} | {"text": "...", "exit": N}}``, keyed by the
command's words before its first option (``"ad app show"``). Like the real CLI it applies
``--query`` with JMESPath (the ``jmespath`` library az itself uses) and prints ``-o json`` or
``-o tsv``, so the scripts' queries run for real against the recorded documents. A command with
no recording fails as az would (exit 1); every call is appended to ``FAKE_AZ_LOG``.
"""

from __future__ import annotations

import json
import os
import sys

import jmespath

FLAGS = {"--stdout", "--no-pretty-print", "--include-inherited", "--include-groups",
         "--only-show-errors", "--yes", "--debug", "--verbose"}


def parse(argv: list[str]) -> tuple[str, dict[str, str]]:
    words, options, i = [], {}, 0
    while i < len(argv) and not argv[i].startswith("-"):
        words.append(argv[i])
        i += 1
    while i < len(argv):
        name = argv[i]
        if name in FLAGS:
            options[name] = ""
            i += 1
            continue
        values = []
        i += 1
        while i < len(argv) and not argv[i].startswith("--") and argv[i] != "-o":
            values.append(argv[i])
            i += 1
        options[name] = " ".join(values)
    return " ".join(words), options


def tsv(value) -> str:
    """knack's TSV: one line per list item, tab-separated values of an object, None empty."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(tsv(item) for item in value)
    if isinstance(value, dict):
        return "\t".join(tsv(v) for v in value.values() if not isinstance(v, (dict, list)))
    if isinstance(value, bool):
        return str(value)
    return str(value)


def main(argv: list[str]) -> int:
    command, options = parse(argv)
    with open(os.environ["FAKE_AZ_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"command": command, "options": options}) + "\n")
    recordings = json.loads(open(os.environ["FAKE_AZ_RECORDINGS"], encoding="utf-8").read())
    recorded = recordings.get(command)
    if recorded is None:
        print(f"ERROR: '{command}' is not recorded", file=sys.stderr)
        return 1
    if recorded.get("exit", 0):
        print(recorded.get("text", "ERROR"), file=sys.stderr)
        return recorded["exit"]
    if "text" in recorded:
        sys.stdout.write(recorded["text"])
        return 0
    document = recorded["json"]
    if options.get("--query"):
        try:
            document = jmespath.search(options["--query"], document)
        except jmespath.exceptions.JMESPathError as error:
            print(f"ERROR: bad query {options['--query']!r}: {error}", file=sys.stderr)
            return 1
    output = options.get("-o") or options.get("--output") or "json"
    if output == "tsv":
        text = tsv(document)
        print(text) if text else None
    elif output != "none":
        print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
