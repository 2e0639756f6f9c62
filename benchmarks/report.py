"""docs/benchmarks.md from the benchmarks themselves: for each `benchmarks/NAME.py`, what it
compares (its docstring) and the newest run's figures from benchmarks/results/NAME.json, with
date, commit, machine and command. A test keeps the page equal to this output.

Run: python benchmarks/report.py [--check]
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
PAGE = os.path.join(os.path.dirname(HERE), "docs", "benchmarks.md")
NOT_BENCHMARKS = ("run.py", "report.py")
# A result's structured figures shown as a table, where the benchmark wrote flat medians.
TABLE_FIELDS = ("medians", "summary")
# Ray's own log lines that reach a benchmark's stdout ("(raylet) A worker died…" after a SIGKILL the
# benchmark made on purpose) stay in the results file and are left off the page.
RAY_LOG_LINE = re.compile(r"^(\x1b\[[0-9;]*m)?\((raylet|pid=\d+|[\w.]+ pid=\d+)[^)]*\)")


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


def _docstring(name: str) -> str:
    with open(os.path.join(HERE, f"{name}.py")) as f:
        return ast.get_docstring(ast.parse(f.read())) or ""


def render() -> str:
    out = ["# Benchmarks", "",
           "Made by `python benchmarks/report.py`: what each benchmark in `benchmarks/` compares (its own",
           "description) and the figures of its newest run, as `./dev bench NAME` kept them in",
           "`benchmarks/results/NAME.json` with the date, commit, machine and command. Only the newest run",
           "of each is here, so two figures for one thing cannot disagree; older runs are in git history.",
           "Every benchmark runs the paths it compares in the same run, alternating, warm-up excluded,",
           "medians.", ""]
    names = sorted(f[:-3] for f in os.listdir(HERE) if f.endswith(".py") and not f.startswith("_")
                   and f not in NOT_BENCHMARKS)
    for name in names:
        out += [f"## {name}", "", "```text", *_docstring(name).splitlines(), "```", ""]
        path = os.path.join(RESULTS_DIR, f"{name}.json")
        if not os.path.isfile(path):
            out += [f"No results file yet: `./dev bench {name}` makes one.", ""]
            continue
        with open(path) as f:
            result = json.load(f)
        out += ["Newest run:", "",
                f"- date: {result.get('date', '?')}, commit `{result.get('commit', '?')}`",
                f"- machine: {_machine(result.get('machine'))}",
                f"- command: `{result.get('command', '?')}`", ""]
        for field in TABLE_FIELDS:
            if isinstance(result.get(field), dict):
                out += _table(result[field]) + [""]
        if result.get("output"):
            lines = [line for line in result["output"] if not RAY_LOG_LINE.match(line)]
            out += ["```text", *lines, "```", ""]
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
