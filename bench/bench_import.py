"""Benchmark: the cold-start share of importing ``function_app``.

Runs ``python -X importtime -c "import function_app"`` in fresh subprocesses (several times,
median) and reports the total import time and the largest imports by cumulative time. A
second series imports ``azure.functions`` first: the Functions worker has loaded it before it
imports the app, so what remains is the app's own share. Also lists which heavy SDKs
(msal, azure.data.tables, azure.keyvault, azure.identity, cryptography, requests, and the
OpenTelemetry API, SDK and Azure Monitor distro) an import of ``function_app`` pulls in: none
should be, they load on the first request.

Writes bench/results/import.json.

    .venv/bin/python bench/bench_import.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

OUT = common.RESULTS / "import.json"
HEAVY = ("msal", "azure.data.tables", "azure.keyvault.secrets", "azure.identity",
         "azure.storage.queue", "cryptography", "requests", "jwt", "opentelemetry",
         "azure.monitor.opentelemetry")
TARGET_S = 0.5


def importtime(code: str) -> list[tuple[str, int, int]]:
    """One fresh interpreter's ``-X importtime`` lines: (module, self µs, cumulative µs), the
    module name keeping its indentation (the nesting depth)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=common.ROOT,
                          capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:"):].split("|")
        rows.append((name.rstrip(), int(own), int(cumulative)))
    return rows


def _package(name: str) -> str | None:
    return next((m for m in HEAVY if name == m or name.startswith(m + ".")), None)


def heavy_cost(rows: list[tuple[str, int, int]]) -> dict[str, float]:
    """Cumulative ms of each heavy package: its modules imported from outside the package
    (importtime prints a module after the ones it imported, one level deeper)."""
    cost: dict[str, float] = {}
    for index, (name, _, cumulative) in enumerate(rows):
        package = _package(name.strip())
        if package is None:
            continue
        depth = len(name) - len(name.lstrip())
        parent = next((n for n, _, _ in rows[index + 1:] if len(n) - len(n.lstrip()) < depth), "")
        if _package(parent.strip()) != package:
            cost[package] = cost.get(package, 0.0) + cumulative / 1000
    return cost


def series(code: str, target: str, runs: int) -> tuple[list[float], list[list[tuple[str, int, int]]]]:
    seconds, all_rows = [], []
    for _ in range(runs):
        rows = importtime(code)
        seconds.append(next(c for name, _, c in rows if name.strip() == target) / 1e6)
        all_rows.append(rows)
    return seconds, all_rows


def largest(all_rows: list[list[tuple[str, int, int]]], count: int = 12) -> list[dict]:
    """Top-level-ish imports by median cumulative time over the runs."""
    by_name: dict[str, list[int]] = {}
    for rows in all_rows:
        for name, _, cumulative in rows:
            by_name.setdefault(name.strip(), []).append(cumulative)
    medians = sorted(((statistics.median(v), n) for n, v in by_name.items() if n != "function_app"),
                     reverse=True)
    return [{"module": name, "cumulative_ms": round(us / 1000, 1)} for us, name in medians[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=OUT)
    options = parser.parse_args()

    cold, cold_rows = series("import function_app", "function_app", options.runs)
    warm, _ = series("import azure.functions; import function_app", "function_app", options.runs)
    loaded = {name.strip() for name, _, _ in cold_rows[0]}
    costs = [heavy_cost(rows) for rows in cold_rows]
    result = {
        "benchmark": "import function_app (cold start share)", "when": common.utc_now(),
        "machine": common.machine(),
        "machine_note": "shared with other engineers' test runs: medians over fresh processes",
        "runs": options.runs,
        "function_app": {"median_s": round(statistics.median(cold), 3),
                         "min_s": round(min(cold), 3), "max_s": round(max(cold), 3)},
        "beyond_azure_functions": {"median_s": round(statistics.median(warm), 3),
                                   "min_s": round(min(warm), 3), "max_s": round(max(warm), 3)},
        "largest_imports": largest(cold_rows),
        "heavy_sdks_imported": sorted(m for m in HEAVY if m in loaded),
        "heavy_sdks_cumulative_ms": {m: round(statistics.median(c.get(m, 0.0) for c in costs), 1)
                                     for m in HEAVY if m in loaded},
        "target_s": TARGET_S,
    }
    result["target_met"] = result["function_app"]["median_s"] <= TARGET_S

    print(f"import function_app: median {result['function_app']['median_s']} s "
          f"(min {result['function_app']['min_s']}, max {result['function_app']['max_s']}, "
          f"{options.runs} fresh processes); beyond azure.functions: "
          f"{result['beyond_azure_functions']['median_s']} s; target <= {TARGET_S} s: "
          f"{'met' if result['target_met'] else 'MISSED'}")
    print(f"heavy SDKs imported by function_app: {result['heavy_sdks_imported'] or 'none'} "
          f"{result['heavy_sdks_cumulative_ms']}")
    print("largest imports (cumulative, median):")
    for row in result["largest_imports"]:
        print(f"  {row['cumulative_ms']:>8.1f} ms  {row['module']}")
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {options.out}")


if __name__ == "__main__":
    main()
