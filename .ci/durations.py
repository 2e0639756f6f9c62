"""Where a test run's minutes go, from its JUnit XML: one markdown row per test file, slowest first.

    python .ci/durations.py reports/junit-pinned.xml [--top 15]
    python .ci/durations.py --failures reports/junit-*.xml

`--failures` prints each failed test with its assertion and the lines where it failed: CI's
log is long, and a failure's traceback can sit far from the log's end.

The XML's times include each test's setup and teardown (`junit_duration_report = "total"`), so
a module fixture's start-up is charged to the first test that uses it.
"""

from __future__ import annotations

import argparse
import collections
import os
import xml.etree.ElementTree as ET


def rows(path: str) -> list[tuple[str, int, float, int]]:
    """(test file, tests, seconds, failed) per file, slowest first."""
    per = collections.defaultdict(lambda: [0, 0.0, 0])
    for case in ET.parse(path).getroot().iter("testcase"):
        parts = case.get("classname", "?").split(".")
        while parts and not parts[-1].startswith("test_"):  # test classes: keep the module
            parts.pop()
        name = "/".join(parts or ["?"]) + ".py"
        entry = per[name]
        entry[0] += 1
        entry[1] += float(case.get("time", 0))
        entry[2] += any(child.tag in ("failure", "error") for child in case)
    return sorted(((k, v[0], v[1], v[2]) for k, v in per.items()), key=lambda r: -r[2])


def slowest(path: str, top: int) -> list[tuple[str, float]]:
    cases = [(f"{c.get('classname')}::{c.get('name')}", float(c.get("time", 0)))
             for c in ET.parse(path).getroot().iter("testcase")]
    return sorted(cases, key=lambda c: -c[1])[:top]


def failures(paths: list[str], lines: int = 12) -> list[str]:
    """One block per failed or errored test: its id, pytest's message, the traceback's `E` lines
    and the `file:line` places it went through (test code only, last ones kept)."""
    out = []
    for path in paths:
        for case in ET.parse(path).getroot().iter("testcase"):
            for child in case:
                if child.tag not in ("failure", "error"):
                    continue
                text = child.text or ""
                errors = [ln for ln in text.splitlines() if ln.startswith("E ")][:lines]
                places = [ln for ln in text.splitlines() if ln.startswith("tests/") and ":" in ln][-4:]
                out.append("\n".join([f"ci: {child.tag.upper()} {case.get('classname')}::{case.get('name')}",
                                       f"  {(child.get('message') or '')[:600]}",
                                       *(f"  {ln[:300]}" for ln in errors + places)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("xml", nargs="+")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--failures", action="store_true", help="print the failed tests of every XML given")
    args = parser.parse_args()
    if args.failures:
        found = failures([p for p in args.xml if os.path.exists(p)])
        print("\n".join(found) if found else "ci: no test failed")
        return
    args.xml = args.xml[0]
    table = rows(args.xml)
    total = sum(r[2] for r in table)
    print("| test file | tests | seconds | share |\n| --- | ---: | ---: | ---: |")
    for name, n, secs, failed in table:
        mark = f" ({failed} failed)" if failed else ""
        print(f"| `{name}` | {n}{mark} | {secs:.0f} | {100 * secs / total:.0f} % |")
    print(f"| **total** | {sum(r[1] for r in table)} | {total:.0f} ({total / 60:.1f} min) | |")
    print(f"\nslowest {args.top} tests (setup + call + teardown):")
    for name, secs in slowest(args.xml, args.top):
        print(f"  {secs:7.1f} s  {name}")


if __name__ == "__main__":
    main()
