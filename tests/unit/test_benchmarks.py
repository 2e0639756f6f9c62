"""The benchmarks' results files and the docs page made from them."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_results_page_is_made_from_the_results_files():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_an_unknown_benchmark_is_refused_naming_the_real_ones():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "no_such_bench"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "no benchmark 'no_such_bench'" in proc.stderr, proc.stderr
    assert "convert" in proc.stderr and "_common" not in proc.stderr and "report" not in proc.stderr
