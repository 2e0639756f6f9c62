"""Run one benchmark (`./dev bench NAME [ARGS]` calls this) and keep its figures.

The benchmark's output goes to the terminal as it runs; when it ends well, its printed lines go
to benchmarks/results/NAME.json with the date, commit, machine (cores, memory, Python) and the
command, beside any figures the benchmark wrote there itself (`_common.write_results`). One
file per benchmark, the newest run only: past runs live in git history, and
docs/benchmarks.md is made from these files (`python benchmarks/report.py`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS_DIR, commit

HERE = os.path.dirname(os.path.abspath(__file__))


def machine() -> dict:
    with open("/proc/meminfo") as f:
        total_kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return {"cores": os.cpu_count(), "memory_gib": round(total_kib / 2**20, 1),
            "python": platform.python_version(), "system": f"{platform.system()} {platform.machine()}"}


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python benchmarks/run.py NAME [ARGS]", file=sys.stderr)
        return 2
    name, args = argv[0].removesuffix(".py"), argv[1:]
    script = os.path.join(HERE, f"{name}.py")
    if name.startswith("_") or name in ("run", "report") or not os.path.isfile(script):
        known = sorted(f[:-3] for f in os.listdir(HERE) if f.endswith(".py") and not f.startswith("_")
                       and f not in ("run.py", "report.py"))
        print(f"no benchmark {name!r}; the benchmarks are: {', '.join(known)}", file=sys.stderr)
        return 2
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    started = time.time()
    lines = []
    proc = subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line.rstrip("\n"))
    rc = proc.wait()
    if rc != 0:
        print(f"the benchmark failed (exit {rc}); {path} is left as it was", file=sys.stderr)
        return rc
    own = {}
    if os.path.isfile(path) and os.path.getmtime(path) >= started:  # it wrote its own figures in this run
        with open(path) as f:
            own = json.load(f)
    record = {"date": time.strftime("%Y-%m-%d"), "commit": commit(),
              "command": " ".join(["./dev bench", name, *args]), **own, "machine": machine(), "output": lines}
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print(f"figures kept in {os.path.relpath(path)}; regenerate the docs page: python benchmarks/report.py",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
