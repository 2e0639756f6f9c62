"""docs/benchmark-results.md from benchmarks/results/*.json: the newest run of each benchmark,
with its date, commit, machine and command. A test keeps the page equal to this output.

Run: python benchmarks/report.py [--check]
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
PAGE = os.path.join(os.path.dirname(HERE), "docs", "benchmark-results.md")
# A result's structured figures shown as a table, where the benchmark wrote flat medians.
TABLE_FIELDS = ("medians", "summary")


def _machine(m: dict | None) -> str:
    if not m:
        return "not recorded (run before machines were recorded)"
    return f"{m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, {m['system']}"


def _table(values: dict) -> list[str]:
    rows = ["| figure | value |", "| --- | --- |"]
    for key, value in values.items():
        shown = f"{value:.3f}" if isinstance(value, float) else json.dumps(value) if isinstance(value, (dict, list)) \
            else str(value)
        rows.append(f"| {key} | {shown} |")
    return rows


def render() -> str:
    out = ["# Benchmark results", "",
           "Made by `python benchmarks/report.py` from `benchmarks/results/*.json`: the newest run of each",
           "benchmark, as the run wrote it (`./dev bench NAME` keeps its figures there). Older runs are in",
           "git history. What each benchmark compares and how: [Benchmarks](benchmarks.md).", ""]
    names = sorted(f[:-5] for f in os.listdir(RESULTS_DIR) if f.endswith(".json"))
    for name in names:
        with open(os.path.join(RESULTS_DIR, f"{name}.json")) as f:
            result = json.load(f)
        out += [f"## {name}", "",
                f"- date: {result.get('date', '?')}, commit `{result.get('commit', '?')}`",
                f"- machine: {_machine(result.get('machine'))}",
                f"- command: `{result.get('command', '?')}`", ""]
        for field in TABLE_FIELDS:
            if isinstance(result.get(field), dict):
                out += _table(result[field]) + [""]
        if result.get("output"):
            out += ["```text", *result["output"], "```", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    page = render()
    if "--check" in argv:
        with open(PAGE) as f:
            if f.read() != page:
                print(f"{PAGE} differs from benchmarks/results: run python benchmarks/report.py", file=sys.stderr)
                return 1
        return 0
    with open(PAGE, "w") as f:
        f.write(page)
    print(f"wrote {os.path.relpath(PAGE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
