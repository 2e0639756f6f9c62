"""The first conversion after `init_spark`, with the background warm-up on and off.

    ./dev bench first_conversion              # 3 rounds, 4M rows
    ./dev bench first_conversion --rounds 5 --pause 15

Each measurement is a fresh Python process (its own embedded Ray with 4 logical CPUs, Spark
with 2 executors x 1 core and 1 GB): `init_spark`, then what comes before the first
conversion - nothing, a pause of `--pause` seconds (a notebook, a slow read), or a first Spark
job (`spark.range(10**6).count()` over both executors, timed: the warm-up competes with it) -
then one `from_spark_recoverable` of the DataFrame of `./dev bench convert` (default Arrow
batch size) and two more (warm). Six cases per round - warm-up on/off (FTBRIDGE_WARM_UP) x
the three preludes - in an order that alternates from round to round. Prints the medians and
ranges.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _common import alternating, median, run_elsewhere

CHILD = r"""
import json, os, sys, tempfile, time
sys.path.insert(0, sys.argv[3])
from _common import ray_init
import ray, ftbridge
rows, prelude, pause = int(sys.argv[1]), sys.argv[2], float(sys.argv[4])
ray_init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
ray.data.DataContext.get_current().enable_progress_bars = False
t0 = time.perf_counter()
spark = ftbridge.init_spark("first", num_executors=2, executor_cores=1, executor_memory="1GB")
init_s = time.perf_counter() - t0
spark.sparkContext.setLogLevel("ERROR")
catalog = os.path.join(tempfile.mkdtemp(prefix="ftbridge-bench-first-"), "catalog.duckdb")
try:
    df = spark.range(0, rows, numPartitions=8).selectExpr(
        "id", "id * 3 as a", "cast(id as double) * 1.5 as b", "concat('s-', cast(id as string)) as s")
    first_job = None
    if prelude == "pause":
        time.sleep(pause)
    elif prelude == "job":
        t = time.perf_counter()
        spark.range(0, 10**6, numPartitions=2).count()
        first_job = time.perf_counter() - t
    times = []
    for _ in range(3):
        t = time.perf_counter()
        ds = ftbridge.from_spark_recoverable(df, catalog=catalog)
        times.append(time.perf_counter() - t)
        ftbridge.release(ds, catalog=catalog)
    print("RESULT " + json.dumps({"init_spark": init_s, "first_job": first_job, "first": times[0],
                                  "warm": times[1:]}), flush=True)
finally:
    ftbridge.stop_spark()
    ray.shutdown()
    import shutil; shutil.rmtree(os.path.dirname(catalog), ignore_errors=True)
"""
CHILD_TIMEOUT_S = 600
PRELUDES = ("none", "pause", "job")


def run_child(rows: int, prelude: str, pause: float, warm: bool, log) -> dict:
    env = {**os.environ, "FTBRIDGE_WARM_UP": "true" if warm else "false"}
    proc = run_elsewhere([sys.executable, "-c", CHILD, str(rows), prelude, os.path.dirname(os.path.abspath(__file__)), str(pause)],
                          env=env, stdout=subprocess.PIPE, stderr=log, text=True, timeout=CHILD_TIMEOUT_S)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit(f"a measurement failed (exit {proc.returncode}); its output is in {log.name}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--pause", type=float, default=15.0)
    args = parser.parse_args()
    cases = [(warm, prelude) for warm in (True, False) for prelude in PRELUDES]
    results: dict = {case: [] for case in cases}
    with tempfile.NamedTemporaryFile("w", prefix="ftbridge-bench-first-", suffix=".log", delete=False) as log:
        print(f"{args.rounds} rounds, {args.rows:,} rows; children's output: {log.name}", flush=True)
        for rnd, case, _ in alternating(cases, args.rounds):
            res = run_child(args.rows, case[1], args.pause, case[0], log)
            results[case].append(res)
            job = f", first job {res['first_job']:.2f} s" if res["first_job"] is not None else ""
            print(f"  round {rnd + 1}: warm-up {'on ' if case[0] else 'off'}, {case[1]:5s}{job}: first conversion "
                  f"{res['first']:.2f} s, warm {' / '.join(f'{w:.2f}' for w in res['warm'])}", flush=True)
    os.remove(log.name)
    print(f"\n{'warm-up':8s} {'before it':24s} {'first conversion: median (range)':>34s} {'first job':>10s} "
          f"{'warm conv.':>11s} {'init_spark':>11s}")
    for (warm, prelude), res in results.items():
        firsts = [r["first"] for r in res]
        jobs = [r["first_job"] for r in res if r["first_job"] is not None]
        label = {"none": "nothing", "pause": f"a {args.pause:.0f} s pause", "job": "a first Spark job"}[prelude]
        job = f"{median(jobs):8.2f} s" if jobs else "         -"
        warms = median([w for r in res for w in r["warm"]])
        print(f"{'on' if warm else 'off':8s} {label:24s} {median(firsts):14.2f} s ({min(firsts):.2f}-{max(firsts):.2f})"
              f"{'':5s} {job} {warms:9.2f} s {median([r['init_spark'] for r in res]):9.2f} s")
    for prelude in PRELUDES:
        on, off = (median([r["first"] for r in results[(w, prelude)]]) for w in (True, False))
        extra = ""
        if prelude == "job":
            j_on, j_off = (median([r["first_job"] for r in results[(w, prelude)]]) for w in (True, False))
            extra = (f"; first job on / off = {j_on / j_off:.2f}, "
                     f"job + conversion on / off = {(j_on + on) / (j_off + off):.2f}")
        print(f"after {prelude:5s}: first conversion, warm-up on / off = {on / off:.2f}{extra}")


if __name__ == "__main__":
    main()
