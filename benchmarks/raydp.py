"""ftbridge against RayDP 1.6.5, side by side: start-up and Spark -> Ray conversion.

    ./dev bench raydp                  # 5 rounds, 4M rows x 8 partitions, 5 timed reps per process
    ./dev bench raydp --quick          # 2 rounds, 1M rows: a smoke run
    ./dev bench raydp --rows 10000000 --rounds 3 --batch-rows 100000

RayDP 1.6.5 needs PySpark <= 3.5.7, so it gets its own venv, built once and cached
(`$FTBRIDGE_CACHE_DIR/bench/raydp-1.6.5`, ~1 GB, from the package index). Both engines run in
that venv - same Spark, Ray and Arrow - ftbridge from this checkout (PYTHONPATH). Each round
starts one fresh process per engine, alternating which goes first; each process starts an
embedded Ray (same CPUs), times `init_spark`, a first job and a first (cold) conversion, then
alternates the paths for `warmup` + `reps` repetitions (warm-up excluded). Printed: medians
per engine, and the ratios ftbridge/RayDP and each path over Spark's own Arrow-batch floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib

sys.path.insert(0, os.path.dirname(__file__))
from _common import alternating, median, run_elsewhere

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RAYDP = "raydp==1.6.5"
PYSPARK = "pyspark==3.5.7"  # the newest PySpark RayDP 1.6.5 admits
CHILD_TIMEOUT_S = 1800


def cache_root() -> str:
    return os.environ.get("FTBRIDGE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ftbridge")


def ftbridge_requirements() -> list[str]:
    """ftbridge's own dependencies from pyproject.toml, PySpark pinned to RayDP's."""
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    return [PYSPARK if d.replace(" ", "").startswith("pyspark") else d for d in deps]


def raydp_venv() -> str:
    """Python of the cached RayDP venv; built on first use."""
    root = os.path.join(cache_root(), "bench", "raydp-1.6.5")
    python = os.path.join(root, "bin", "python")
    stamp = os.path.join(root, ".complete-editable")  # venvs built before ftbridge was installed in them are rebuilt
    if os.path.isfile(stamp):
        return python
    print(f"building the RayDP venv in {root} (once; output in {root}.log) ...", flush=True)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with open(f"{root}.log", "w") as log:
        # ftbridge itself editable and without its pins: lineage/ and chaos/ of the checkout install
        # as ftbridge.lineage and ftbridge.chaos (a bare PYTHONPATH would not map them).
        for cmd in ([sys.executable, "-m", "venv", "--clear", root],
                    [python, "-m", "pip", "install", "--disable-pip-version-check", RAYDP, PYSPARK,
                     *ftbridge_requirements()],
                    [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "-e", REPO]):
            if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=1800).returncode != 0:
                sys.exit(f"could not build the RayDP venv: {' '.join(cmd)} failed; see {root}.log")
    open(stamp, "w").close()
    return python


def run_child(python: str, engine: str, spec: dict, log_path: str) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO, JAVA_HOME=os.environ.get("JAVA_HOME", ""))
    if not env["JAVA_HOME"]:
        env.pop("JAVA_HOME")
    # RayDP's JVMs (driver, app master, Ray Java workers) put spark-*, blockmgr-* and native
    # libraries in java.io.tmpdir: give every JVM of the child a folder removed after it.
    java_tmp = tempfile.mkdtemp(prefix=f"java-{engine}-", dir=spec["tmp"])
    env["JAVA_TOOL_OPTIONS"] = " ".join(o for o in (env.get("JAVA_TOOL_OPTIONS"), f"-Djava.io.tmpdir={java_tmp}") if o)
    try:
        return _run_child(python, engine, spec, log_path, env)
    finally:
        shutil.rmtree(java_tmp, ignore_errors=True)


def _run_child(python: str, engine: str, spec: dict, log_path: str, env: dict) -> dict:
    with open(log_path, "a") as log:
        log.write(f"\n===== {engine} {time.strftime('%H:%M:%S')}\n")
        log.flush()
        try:
            proc = run_elsewhere([python, os.path.join(HERE, "_side_by_side.py"), engine, json.dumps(spec)],
                                  env=env, stdout=subprocess.PIPE, stderr=log, text=True, timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            sys.exit(f"{engine} did not finish within {CHILD_TIMEOUT_S}s; its output is in {log_path}")
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.exit(f"{engine} failed (exit {proc.returncode}); its output is in {log_path}:\n{proc.stdout[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="processes per engine (default 5)")
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per process")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=4, help="logical CPUs of each embedded Ray")
    parser.add_argument("--batch-rows", type=int, default=0,
                        help="spark.sql.execution.arrow.maxRecordsPerBatch (0: Spark's default)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.rows, args.reps, args.warmup = 2, 1_000_000, 3, 1
    python = raydp_venv()
    tmp = tempfile.mkdtemp(prefix="ftbridge-bench-raydp-")
    configs = {"spark.sql.execution.arrow.maxRecordsPerBatch": str(args.batch_rows)} if args.batch_rows else {}
    spec = {"rows": args.rows, "partitions": args.partitions, "reps": args.reps, "warmup": args.warmup,
            "cpus": args.cpus, "executors": 2, "cores": 1, "memory": "1GB", "configs": configs, "tmp": tmp}
    log_path = os.path.join(tmp, "children.log")
    print(f"{args.rounds} rounds, {args.rows:,} rows x {args.partitions} partitions, 2 executors x 1 core, "
          f"Ray with {args.cpus} CPUs, batch rows {args.batch_rows or 'default'}; children's output: {log_path}",
          flush=True)
    results: dict[str, list[dict]] = {"ftbridge": [], "raydp": []}
    for rnd, engine, _ in alternating(("ftbridge", "raydp"), args.rounds):
        res = run_child(python, engine, spec, log_path)
        results[engine].append(res)
        print(f"  round {rnd}: {engine:8s} init_spark {res['init_spark_s']:5.2f} s, first job "
              f"{res['first_job_s']:5.2f} s, first conversion {res['first_conversion_s']:5.2f} s, "
              f"recoverable {median(res['recoverable_s']):5.2f} s", flush=True)
    report(results, args)


def report(results: dict[str, list[dict]], args) -> None:
    def per_process(engine, key):  # one number per process
        return median([r[key] for r in results[engine]])

    def per_rep(engine, key):  # every timed repetition of every process
        return median([x for r in results[engine] for x in r[key]])

    rows = [
        ("init_spark", per_process, "init_spark_s"),
        ("init_spark + first job", None, None),
        ("first conversion (cold)", per_process, "first_conversion_s"),
        ("Spark Arrow floor", per_rep, "floor_s"),
        ("recoverable (warm)", per_rep, "recoverable_s"),
        ("plain (warm)", per_rep, "plain_s"),
    ]
    versions = results["ftbridge"][0]["versions"]
    print(f"\nmedians (Ray {versions['ray']}, PySpark {versions['pyspark']}; start-up over {args.rounds} processes, "
          f"conversions over {args.rounds * args.reps} repetitions)")
    print(f"{'':26s} {'ftbridge':>9s} {'RayDP':>9s} {'ftbridge/RayDP':>15s}")
    values = {}
    for label, fn, key in rows:
        if fn is None:
            ft = median([r["init_spark_s"] + r["first_job_s"] for r in results["ftbridge"]])
            rd = median([r["init_spark_s"] + r["first_job_s"] for r in results["raydp"]])
        else:
            ft, rd = fn("ftbridge", key), fn("raydp", key)
        values[label] = (ft, rd)
        print(f"{label:26s} {ft:8.2f}s {rd:8.2f}s {ft / rd:15.2f}")
    ft_floor, rd_floor = values["Spark Arrow floor"]
    ft_rec, rd_rec = values["recoverable (warm)"]
    print(f"\nrecoverable / its Spark floor: ftbridge {ft_rec / ft_floor:.2f}x, RayDP {rd_rec / rd_floor:.2f}x")
    print(f"RayDP recoverable / ftbridge recoverable: {rd_rec / ft_rec:.2f}x")
    print(f"target: ftbridge recoverable <= 1.2x its floor: {'met' if ft_rec / ft_floor <= 1.2 else 'NOT met'} "
          f"({ft_rec / ft_floor:.2f}x); >= 3x faster than RayDP's: {'met' if rd_rec / ft_rec >= 3 else 'NOT met'} "
          f"({rd_rec / ft_rec:.2f}x)")
    ft_start = values["init_spark + first job"]
    print(f"start-up to a first result, ftbridge/RayDP: {ft_start[0] / ft_start[1]:.2f}")


if __name__ == "__main__":
    main()
