"""How conversion cost grows with rows and partitions: recoverable vs driver collect vs Parquet hand-off.

    ./dev bench scaling                        # 1M / 10M / 50M rows x 8 / 200 / 10,000 partitions
    ./dev bench scaling --rows 1000000 --partitions 8,200

One process, Spark's default settings (Arrow batch size 10,000 rows, `spark.driver.memory`
1g, `spark.driver.maxResultSize` 1g), 2 executors x 1 core with 3 GB each, Ray with 4 logical
CPUs. Each cell runs the three paths once, in an order that rotates from cell to cell, after
a warm-up cell that is not reported. Every path ends with the data materialized in Ray's
object store:

  recoverable  ftbridge.from_spark_recoverable(df)  (+ ds.count(), then release)
  collect      df.toArrow() on the driver -> ray.data.from_arrow
  parquet      df.write.parquet -> ray.data.read_parquet(...).materialize()

Per path: seconds, peak driver RSS growth, bytes in Ray's object store (the materialized
Dataset), or the error that stopped it (e.g. the driver's result size limit for collect). A
path whose time, scaled in proportion from the cells with fewer partitions or fewer rows (the
smaller projection), would exceed `--budget-s` is not run (marked "skipped" with the projection), so one slow path does
not hold up the grid.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import ray
from _common import PeakRss, ray_init

import ftbridge

PATHS = ("recoverable", "collect", "parquet")


def make_df(spark, rows: int, partitions: int):
    return spark.range(0, rows, numPartitions=partitions).selectExpr(
        "id", "id * 3 as a", "cast(id as double) * 1.5 as b", "concat('s-', cast(id as string)) as s")


def run(path: str, spark, rows: int, partitions: int, tmp: str) -> int:
    df = make_df(spark, rows, partitions)
    if path == "recoverable":
        ds = ftbridge.from_spark_recoverable(df, catalog=os.path.join(tmp, "catalog.duckdb"))
        assert ds.count() == rows
        size = ds.size_bytes()
        ftbridge.release(ds)
        return size
    if path == "collect":
        ds = ray.data.from_arrow(df.toArrow())
        assert ds.count() == rows
        return ds.size_bytes()
    out = os.path.join(tmp, "parquet")
    df.write.mode("overwrite").parquet(out)
    ds = ray.data.read_parquet(out).materialize()
    assert ds.count() == rows
    size = ds.size_bytes()
    del ds
    shutil.rmtree(out, ignore_errors=True)
    return size


def measure(path: str, spark, rows: int, partitions: int, tmp: str) -> dict:
    t0 = time.perf_counter()
    try:
        with PeakRss() as rss:
            size = run(path, spark, rows, partitions, tmp)
    except Exception as exc:  # a path that cannot do this size is a result, not a crash
        text = str(exc).strip().splitlines()
        reason = next((line for line in text if "maxResultSize" in line or "OutOfMemory" in line or
                       "Java heap" in line), text[0] if text else type(exc).__name__)
        return {"s": time.perf_counter() - t0, "error": f"{type(exc).__name__}: {reason[:160]}"}
    return {"s": time.perf_counter() - t0, "rss_mb": rss.delta / 2**20, "store_mb": size / 2**20}


def projected(results: dict, path: str, rows: int, parts: int) -> float:
    """Seconds `path` would take here, scaled in proportion from the nearest measured cell with the
    same rows and fewer partitions, and from the one with the same partitions and fewer rows
    (the smaller of the two - each alone overstates: fixed costs do not grow with rows, data
    does not grow with partitions; 0 when neither was measured)."""
    measured = {(r, p): v["s"] for (r, p, name), v in results.items() if name == path and "error" not in v}
    fewer_parts = [p for (r, p) in measured if r == rows and p < parts]
    fewer_rows = [r for (r, p) in measured if p == parts and r < rows]
    guesses = []
    if fewer_parts:
        guesses.append(measured[(rows, max(fewer_parts))] * parts / max(fewer_parts))
    if fewer_rows:
        guesses.append(measured[(max(fewer_rows), parts)] * rows / max(fewer_rows))
    return min(guesses, default=0.0)


def cell_text(r: dict) -> str:
    if "skipped" in r:
        return r["skipped"]
    if "error" in r:
        return f"failed after {r['s']:.1f} s"
    return f"{r['s']:.2f} s, RSS +{r['rss_mb']:.0f} MB, {r['store_mb']:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="1000000,10000000,50000000")
    parser.add_argument("--partitions", default="8,200,10000")
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument("--paths", default=",".join(PATHS), help="a subset of " + ",".join(PATHS))
    args = parser.parse_args()
    paths = tuple(p for p in PATHS if p in args.paths.split(","))
    rows_list = [int(x) for x in args.rows.split(",")]
    parts_list = [int(x) for x in args.partitions.split(",")]
    logging.basicConfig(level=logging.WARNING)
    ray_init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    spark = ftbridge.init_spark("scaling", num_executors=2, executor_cores=1, executor_memory="3GB")
    spark.sparkContext.setLogLevel("ERROR")
    tmp = tempfile.mkdtemp(prefix="ftbridge-bench-scaling-")
    results = {}
    try:
        for path in paths:  # warm-up, not reported
            measure(path, spark, 200_000, 8, tmp)
        turn = 0
        for rows in rows_list:
            for parts in parts_list:
                order = paths[turn % len(paths):] + paths[:turn % len(paths)]
                turn += 1
                for path in order:
                    guess = projected(results, path, rows, parts)
                    if guess > args.budget_s:
                        r = {"skipped": f"skipped (≈ {guess:.0f} s projected)", "error": "skipped", "s": float("nan")}
                    else:
                        r = measure(path, spark, rows, parts, tmp)
                    results[(rows, parts, path)] = r
                    print(f"{rows:>11,} rows {parts:>6,} partitions {path:<12} {cell_text(r)}"
                          + (f"  [{r['error']}]" if "error" in r and "skipped" not in r else ""), flush=True)
    finally:
        ftbridge.stop_spark()
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| rows | partitions | " + " | ".join(PATHS) + " | recoverable / collect | parquet / recoverable |")
    print("| --- | --- | " + " | ".join("---" for _ in PATHS) + " | --- | --- |")
    not_run = {"skipped": "not run", "error": "not run", "s": float("nan")}
    for rows in rows_list:
        for parts in parts_list:
            rs = [results.get((rows, parts, p), not_run) for p in PATHS]
            rec, col, pq = rs
            ratio1 = f"{rec['s'] / col['s']:.2f}" if "error" not in rec and "error" not in col else "-"
            ratio2 = f"{pq['s'] / rec['s']:.2f}" if "error" not in rec and "error" not in pq else "-"
            print(f"| {rows:,} | {parts:,} | " + " | ".join(cell_text(r) for r in rs) + f" | {ratio1} | {ratio2} |")


if __name__ == "__main__":
    main()
