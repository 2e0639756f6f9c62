"""Spark -> Ray, the competing paths in one run on one machine, with ratios and targets.

    ./dev bench convert            # 4M rows x 5 repetitions per batch size, then 10M rows once
    ./dev bench convert --quick    # 1M rows, for a smoke run

First, before anything else has run, one cold `from_spark_recoverable` of the full size (cold
executor code paths, the catalog writer's first use, Ray workers for the read tasks): reported
on its own. Then, for Spark's default Arrow batch size (10,000 rows) and the tuned one
(`spark.sql.execution.arrow.maxRecordsPerBatch=100000`), one warm-up round and `--reps`
timed rounds, the order of the paths reversed every other round; medians.

Paths, each but the floor ending with the data materialised in Ray's object store:
  floor        Spark's own Arrow batches made and counted in the executors, not moved
               (df._jdf.toArrowBatchRdd().count()): no conversion can be faster
  recoverable  ftbridge.from_spark_recoverable(df)   (persisted MEMORY_AND_DISK for rebuilds)
  recov-nocache  the same with storage_level=StorageLevel.NONE (rebuilds from Spark lineage only):
               shows what keeping the rebuild copy costs
  collect      df.toArrow() on the driver -> ray.data.from_arrow   (not fault tolerant)
  parquet      df.write.parquet -> ray.data.read_parquet().materialize()
Spark: 2 executors x 1 core. Ray gets 2 extra logical CPUs so Ray Data's read_parquet tasks
can run while executors hold theirs (ftbridge's own tasks ask for none).
Targets, printed met / NOT met: recoverable <= 1.4x the floor (<= 1.2x from 10M rows),
<= 1.3x collect, and parquet >= 2x recoverable.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import ray
from _common import PeakRss, alternating, bench_session, median, size_args, timed

import ftbridge


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


def run_floor(spark, rows, _):
    make_df(spark, rows)._jdf.toArrowBatchRdd().count()
    return 0


# Recoverable over the floor, default storage level: <= 1.4x below 10M rows, <= 1.2x from 10M on.
FLOOR_TARGET, FLOOR_TARGET_BIG, BIG_ROWS = 1.4, 1.2, 10_000_000
PATHS = {"floor": run_floor, "recoverable": run_recoverable, "recov-nocache": run_recoverable_nocache,
         "collect": run_collect, "parquet": run_parquet}
BATCH_SIZES = (("Spark's default", 10_000), ("tuned", 100_000))
_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"


def measure(spark, rows, reps, tmp, catalog, warmup=1):
    results = {name: [] for name in PATHS}
    rss = {name: 0 for name in PATHS}
    size = 0
    for _, name, counted in alternating(PATHS, reps, warmup):
        arg = catalog if name.startswith("recov") else tmp
        with PeakRss() as peak:
            secs, size_ = timed(lambda name=name, arg=arg: PATHS[name](spark, rows, arg))
        if not counted:
            continue
        size = size_ or size
        results[name].append(secs)
        rss[name] = max(rss[name], peak.delta)
    return results, rss, size


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(rows, results, rss, size, label):
    base = median(results["recoverable"])
    print(f"\n{rows:,} rows, {size / 1e6:.0f} MB Arrow, 8 partitions, 2 executors x 1 core, batch size {label}")
    print(f"{'path':13s} {'runs (s)':>34s} {'median s':>9s} {'rows/s':>12s} {'vs recoverable':>15s} "
          f"{'vs floor':>9s} {'driver RSS +MB':>15s}")
    floor = median(results["floor"])
    for name, secs in results.items():
        m = median(secs)
        print(f"{name:13s} {' / '.join(f'{s:.2f}' for s in secs):>34s} {m:9.2f} {rows / m:12,.0f} "
              f"{m / base:14.2f}x {m / floor:8.2f}x {rss[name] / 1e6:15.0f}")
    c, p = median(results["collect"]), median(results["parquet"])
    limit = FLOOR_TARGET_BIG if rows >= BIG_ROWS else FLOOR_TARGET
    print(f"targets: recoverable / floor = {base / floor:.2f} (<= {limit}: {_met(base / floor <= limit)}); "
          f"recoverable / collect = {base / c:.2f} (<= 1.3: {_met(base / c <= 1.3)}); "
          f"parquet / recoverable = {p / base:.2f} (>= 2: {_met(p / base >= 2)})", flush=True)


def main() -> None:
    args = size_args()
    spark = bench_session(batch_rows=None)
    tmp = tempfile.mkdtemp(prefix="ftbridge-bench-")
    catalog = os.path.join(tmp, "catalog.duckdb")
    try:
        secs, _ = timed(lambda: run_recoverable(spark, args.rows, catalog))
        print(f"first from_spark_recoverable after init_spark (cold), {args.rows:,} rows: {secs:.2f} s", flush=True)
        for label, batch in BATCH_SIZES:
            spark.conf.set(_BATCH, str(batch))
            results, rss, size = measure(spark, args.rows, args.reps, tmp, catalog)
            report(args.rows, results, rss, size, f"{label} ({batch:,} rows)")
        if args.big:
            results, rss, size = measure(spark, args.big, 1, tmp, catalog, warmup=0)
            report(args.big, results, rss, size, f"tuned ({BATCH_SIZES[-1][1]:,} rows)")
    finally:
        ftbridge.stop_spark()
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
