"""Ray -> Spark, three paths in one run on one machine, with ratios.

    ./dev bench to_spark            # 4M rows x 5 repetitions (alternating), then 10M rows once
    ./dev bench to_spark --quick    # 1M rows, for a smoke run

The Dataset (id long, a long, b double, s string; 8 blocks) is materialized in Ray's object
store first and not timed. Each path ends with Spark having read every column of every row
(`df.write.format("noop")`):
  ftbridge   ftbridge.to_spark(ds, spark)                (blocks staged as Arrow IPC, read in order)
  parquet    ds.write_parquet(dir) -> spark.read.parquet(dir)
  driver     spark.createDataFrame(ds.to_pandas())       (everything through the driver)
Spark: 2 executors x 1 core; Ray gets 2 extra logical CPUs for Ray Data's write tasks. The
driver path runs at the first size only: at 10M rows it does not finish in PySpark's default
1 GB driver heap. Its Spark job is cancelled after --driver-limit seconds ("> limit").
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(__file__))
import ray
from _common import PeakRss, bench_session, median, size_args, timed

import ftbridge


def make_ds(spark, rows: int, catalog: str):
    df = spark.range(0, rows, numPartitions=8).selectExpr(
        "id", "id * 3 as a", "cast(id as double) * 1.5 as b", "concat('s-', cast(id as string)) as s")
    return ftbridge.from_spark_recoverable(df, catalog=catalog)


def consume(df) -> None:
    df.write.format("noop").mode("overwrite").save()


def run_ftbridge(ds, spark, tmp, catalog):
    df = ftbridge.to_spark(ds, spark, catalog=catalog)
    consume(df)
    ftbridge.release(df)


def run_parquet(ds, spark, tmp, _):
    out = os.path.join(tmp, "pq")
    ds.write_parquet(out)
    consume(spark.read.parquet(out))
    shutil.rmtree(out, ignore_errors=True)


DRIVER_LIMIT_S = 180.0


def run_driver(ds, spark, tmp, _):
    timer = threading.Timer(DRIVER_LIMIT_S, spark.sparkContext.cancelAllJobs)
    timer.start()
    try:
        consume(spark.createDataFrame(ds.to_pandas()))
    except Exception:  # cancelled at the limit
        return "limit"
    finally:
        timer.cancel()


PATHS = {"ftbridge": run_ftbridge, "parquet": run_parquet, "driver": run_driver}


def measure(ds, spark, reps, tmp, catalog, paths=PATHS):
    results = {name: [] for name in paths}
    rss = {name: 0 for name in paths}
    for _ in range(reps):
        for name, fn in paths.items():
            with PeakRss() as peak:
                secs, out = timed(lambda fn=fn: fn(ds, spark, tmp, catalog))
            results[name].append(float("inf") if out == "limit" else secs)
            rss[name] = max(rss[name], peak.delta)
    return results, rss


def report(rows, size, results, rss):
    base = median(results["ftbridge"])
    print(f"\n{rows:,} rows, {size / 1e6:.0f} MB Arrow, 8 blocks, 2 executors x 1 core")
    print(f"{'path':10s} {'runs (s)':>30s} {'median s':>9s} {'rows/s':>12s} {'vs ftbridge':>12s} "
          f"{'driver RSS +MB':>15s}")
    for name, secs in results.items():
        m = median(secs)
        runs = " / ".join(f"{s:.2f}" if s != float("inf") else f"> {DRIVER_LIMIT_S:.0f}" for s in secs)
        print(f"{name:10s} {runs:>30s} {m:9.2f} {rows / m:12,.0f} {m / base:11.2f}x {rss[name] / 1e6:15.0f}")
    print(f"parquet / ftbridge = {median(results['parquet']) / base:.2f} (target >= 2)"
          + (f"; driver RSS + ftbridge {rss['ftbridge'] / 1e6:.0f} MB vs driver path {rss['driver'] / 1e6:.0f} MB"
             if "driver" in rss else ""))


def main() -> None:
    args = size_args(lambda parser: parser.add_argument("--driver-limit", type=float, default=DRIVER_LIMIT_S))
    globals()["DRIVER_LIMIT_S"] = args.driver_limit
    spark = bench_session()
    tmp = tempfile.mkdtemp(prefix="ftbridge-bench-")
    catalog = os.path.join(tmp, "catalog.duckdb")
    try:
        warm = make_ds(spark, 200_000, catalog)
        measure(warm, spark, 1, tmp, catalog)  # warm up JVMs and Python workers on every path
        ftbridge.release(warm)
        for rows, reps in ((args.rows, args.reps), (args.big, 1)):
            if not rows:
                continue
            ds = make_ds(spark, rows, catalog)
            # The driver path at 10M rows does not finish in PySpark's default 1 GB driver heap (and
            # cannot be cancelled: it is not a Spark job), so the big run compares the other two.
            paths = PATHS if rows == args.rows else {k: v for k, v in PATHS.items() if k != "driver"}
            results, rss = measure(ds, spark, reps, tmp, catalog, paths)
            report(rows, ds.size_bytes(), results, rss)
            ftbridge.release(ds)
    finally:
        ftbridge.stop_spark()
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
