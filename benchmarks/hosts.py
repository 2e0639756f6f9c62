"""Faults on real hosts: how long detection and recovery take, and what moves between hosts.

    ./dev bench hosts [ROUNDS]      (default 3; needs root: network, mount and PID namespaces)

Each round runs tests/hosts/test_hosts.py as its own pytest process on a fresh host-level cluster
(chaos/hosts.py: a head and two worker hosts, 1 CPU each, 200,000 rows in 8 partitions, node-local
spill), so the figures come from runs whose every row was checked; the test writes what it
measured to FTBRIDGE_HOSTS_FIGURES. Bytes moved are the sum of what every host's interface sent
during the step (data and Ray's control traffic). Medians over the rounds are printed and go to
benchmarks/results/hosts.json with the date, commit and command, beside every round's figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _common import median, write_results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUND_TIMEOUT_S = 900


def one_round(index: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="ftbridge-bench-hosts-") as tmp:
        out = os.path.join(tmp, "figures.json")
        env = {**os.environ, "FTBRIDGE_HOSTS_FIGURES": out}
        proc = subprocess.run([sys.executable, "-m", "pytest", "tests/hosts/test_hosts.py", "-q", "-p",
                               "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=ROUND_TIMEOUT_S)
        if proc.returncode != 0 or not os.path.exists(out):
            sys.exit(f"round {index}: the host test failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}")
        with open(out) as f:
            return json.load(f)


def flat(figures: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)):
            out[f"{prefix}{key}"] = value
    return out


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    if rounds < 1:
        sys.exit("usage: ./dev bench hosts [ROUNDS >= 1]")
    per_round = []
    for i in range(rounds):
        per_round.append(one_round(i + 1))
        print(f"round {i + 1}/{rounds} done", file=sys.stderr, flush=True)
    rows = [flat(r) for r in per_round]
    medians = {k: median([r[k] for r in rows if k in r]) for k in rows[0]}
    print(f"{'figure':58s} {'median':>14s}   rounds")
    for key, value in medians.items():
        runs = " / ".join(f"{r.get(key, float('nan')):.1f}" if key.endswith("_s") else str(r.get(key)) for r in rows)
        shown = f"{value:.1f} s" if key.endswith("_s") else (f"{value / 2**20:.1f} MiB" if "bytes" in key
                                                             else f"{value:g}")
        print(f"{key:58s} {shown:>14s}   {runs}")
    path = write_results("hosts", f"./dev bench hosts {rounds}", rounds=rounds, medians=medians, per_round=per_round)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
