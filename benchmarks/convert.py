"""Spark -> Ray, three paths in one run on one machine, with ratios.

    ./dev bench convert            # 4M rows x 5 repetitions, then 10M rows once
    ./dev bench convert --quick    # 1M rows, for a smoke run

Paths, each ending with the data materialised in Ray's object store:
  recoverable  ftbridge.from_spark_recoverable(df)   (persisted MEMORY_AND_DISK for rebuilds)
  recov-nocache  the same with storage_level=StorageLevel.NONE (rebuilds from Spark lineage only):
               shows what keeping the rebuild copy costs
  collect      df.toArrow() on the driver -> ray.data.from_arrow   (not fault tolerant)
  parquet      df.write.parquet -> ray.data.read_parquet().materialize()
Spark: 2 executors x 1 core. Ray gets 2 extra logical CPUs so Ray Data's read_parquet tasks
can run while executors hold theirs (ftbridge's own tasks ask for none).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _common import PeakRss, bench_session, median, size_args, timed  # noqa: E402

import ray  # noqa: E402

import ftbridge  # noqa: E402


def make_df(spark, rows: int):
    return spark.range(0, rows, numPartitions=8).selectExpr(
        "id", "id * 3 as a", "cast(id as double) * 1.5 as b", "concat('s-', cast(id as string)) as s")


def run_recoverable(spark, rows, catalog, storage_level=None):
    df = make_df(spark, rows)
    ds = ftbridge.from_spark_recoverable(df, storage_level, catalog=catalog)
    size = ds.size_bytes()
    ftbridge.release(ds)
    return size


def run_recoverable_nocache(spark, rows, catalog):
    from pyspark import StorageLevel

    return run_recoverable(spark, rows, catalog, StorageLevel.NONE)


def run_collect(spark, rows, _):
    table = make_df(spark, rows).toArrow()
    ds = ray.data.from_arrow(table)
    return ds.size_bytes()


def run_parquet(spark, rows, tmp):
    out = os.path.join(tmp, f"pq-{rows}")
    make_df(spark, rows).write.mode("overwrite").parquet(out)
    ds = ray.data.read_parquet(out).materialize()
    size = ds.size_bytes()
    shutil.rmtree(out, ignore_errors=True)
    return size


PATHS = {"recoverable": run_recoverable, "recov-nocache": run_recoverable_nocache, "collect": run_collect,
         "parquet": run_parquet}


def measure(spark, rows, reps, tmp, catalog):
    results = {name: [] for name in PATHS}
    rss = {name: 0 for name in PATHS}
    size = 0
    for _ in range(reps):
        for name, fn in PATHS.items():
            arg = catalog if name.startswith("recov") else tmp
            with PeakRss() as peak:
                secs, size_ = timed(lambda: fn(spark, rows, arg))
            size = size_ or size
            results[name].append(secs)
            rss[name] = max(rss[name], peak.delta)
    return results, rss, size


def report(rows, results, rss, size):
    base = median(results["recoverable"])
    print(f"\n{rows:,} rows, {size / 1e6:.0f} MB Arrow, 8 partitions, 2 executors x 1 core")
    print(f"{'path':12s} {'runs (s)':>22s} {'median s':>9s} {'rows/s':>12s} {'MB/s':>8s} "
          f"{'vs recoverable':>15s} {'driver RSS +MB':>15s}")
    for name, secs in results.items():
        m = median(secs)
        print(f"{name:12s} {' / '.join(f'{s:.2f}' for s in secs):>22s} {m:9.2f} {rows / m:12,.0f} "
              f"{size / 1e6 / m:8.1f} {m / base:14.2f}x {rss[name] / 1e6:15.0f}")
    c, p = median(results["collect"]), median(results["parquet"])
    print(f"recoverable / collect = {base / c:.2f} (target <= 1.3); parquet / recoverable = {p / base:.2f} "
          f"(target >= 2)")


def main() -> None:
    args = size_args()
    spark = bench_session()
    tmp = tempfile.mkdtemp(prefix="ftbridge-bench-")
    catalog = os.path.join(tmp, "catalog.duckdb")
    try:
        measure(spark, 200_000, 1, tmp, catalog)  # warm up JVMs and Python workers on every path
        results, rss, size = measure(spark, args.rows, args.reps, tmp, catalog)
        report(args.rows, results, rss, size)
        if args.big:
            results, rss, size = measure(spark, args.big, 1, tmp, catalog)
            report(args.big, results, rss, size)
    finally:
        ftbridge.stop_spark()
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
