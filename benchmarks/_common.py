"""Helpers shared by the benchmarks: timing, RSS sampling, tables."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")
REPORTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reports")


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    """Samples this process's RSS every 20 ms; `.delta` is the peak above the start."""

    def __init__(self) -> None:
        self.start = self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.start = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def delta(self) -> int:
        return self.peak - self.start


def alternating(names, rounds: int, warmup: int = 0):
    """The order every benchmark runs its paths in: `warmup` rounds, then `rounds` more, each going
    through `names` and the next one through them reversed. Yields (round, name, counted), where
    counted is False in the warm-up rounds."""
    names = list(names)
    for r in range(warmup + rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            yield r, name, r >= warmup


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def size_args(extra=None):
    """--quick / --rows / --reps / --big, shared by the conversion benchmarks."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--big", type=int, default=10_000_000)
    if extra:
        extra(parser)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.reps, args.big = 1_000_000, 1, 0
    return args


def _exit(signum, frame):
    raise SystemExit(128 + signum)


def ray_init(**kwargs):
    """`ray.init`, then SIGTERM ends the benchmark through SystemExit (as Ctrl-C does through
    KeyboardInterrupt), so its `finally` blocks and exit hooks remove what it made. After
    ray.init, which installs a handler of its own."""
    import ray

    ray.init(**kwargs)
    signal.signal(signal.SIGTERM, _exit)


def bench_session(batch_rows: int | None = 100_000, encrypt: bool = False):
    """Embedded Ray (4 logical CPUs) and Spark on it (2 executors x 1 core), quiet; returns the session.

    `batch_rows`: spark.sql.execution.arrow.maxRecordsPerBatch (None: Spark's default);
    `encrypt`: init_spark's encrypt= (Spark RPC encryption)."""
    import logging

    import ray

    import ftbridge

    logging.basicConfig(level=logging.WARNING)
    ray_init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    configs = {"spark.sql.execution.arrow.maxRecordsPerBatch": str(batch_rows)} if batch_rows else {}
    spark = ftbridge.init_spark("bench", num_executors=2, executor_cores=1, executor_memory="3GB", configs=configs,
                                encrypt=encrypt)
    spark.sparkContext.setLogLevel("ERROR")
    return spark



def run_elsewhere(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run` in a temp folder of its own, removed afterwards: what a child's JVMs
    leave in their working folder (a crash log, a Derby metastore) never lands in the checkout.
    A JVM crash log is kept in reports/ and named on stderr."""
    with tempfile.TemporaryDirectory(prefix="ftbridge-bench-") as cwd:
        try:
            return subprocess.run(cmd, cwd=cwd, **kwargs)
        finally:
            for crash in glob.glob(os.path.join(cwd, "hs_err_pid*.log")):
                os.makedirs(REPORTS, exist_ok=True)
                shutil.copy(crash, REPORTS)
                print(f"a JVM of the benchmark crashed: {os.path.join(REPORTS, os.path.basename(crash))}",
                      file=sys.stderr)


def child_result(cmd: list[str], env: dict, timeout_s: float, label: str) -> dict:
    """Run one benchmark round as its own process (`cmd`) and return what it printed after
    'RESULT ' (JSON); exit with its stderr when it printed none."""
    env = dict(env)
    env.pop("RAY_ADDRESS", None)  # each round embeds its own Ray
    proc = run_elsewhere(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{label} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def commit() -> str:
    """The checked-out commit, for the results files."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(__file__), timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_results(name: str, command: str, **fields) -> str:
    """benchmarks/results/NAME.json with the date, commit and command that made it; returns its path."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d"), "commit": commit(), "command": command, **fields}, f, indent=2)
    return path
