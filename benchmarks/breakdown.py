"""Where a recoverable conversion's time goes, step by step, against Spark's own floor.

    ./dev bench breakdown [--rows 4000000] [--reps 5] [--batch-rows 0]

One process, Spark on Ray with 2 executors x 1 core (Ray with 4 logical CPUs), the DataFrame
of `./dev bench convert`. Each repetition (after one warm-up) times, alternating order:
  floor            Spark's Arrow batches made and counted in the executors (df._jdf.toArrowBatchRdd())
  spill, no cache  the spill job alone with StorageLevel.NONE (batches made and written to files)
  spill, cached    the spill job alone with MEMORY_AND_DISK (the default: batches also kept by Spark)
  end to end       ftbridge.from_spark_recoverable(df) (default level) + count, with its own
                   log line split into spill / catalog / read
and prints medians and each over the floor.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import median, ray_init


class _Steps(logging.Handler):
    """Picks the spill / catalog / read split out of the conversion's INFO line."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.last: dict[str, float] = {}

    def emit(self, record):
        m = re.search(r"spill ([\d.]+)s, catalog ([\d.]+)s.*read ([\d.]+)s", record.getMessage())
        if m:
            self.last = {"spill": float(m.group(1)), "catalog": float(m.group(2)), "read": float(m.group(3))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch-rows", type=int, default=0)
    args = parser.parse_args()

    import ray
    from pyspark import StorageLevel

    import ftbridge
    from ftbridge.convert.spill.batches import ArrowBatches
    from ftbridge.convert.spill.job import spill_all
    from ftbridge.convert.spill.target import SpillTarget, delete_conversion_dirs

    logging.basicConfig(level=logging.ERROR)
    steps = _Steps()
    conv_log = logging.getLogger("ftbridge.convert.conversion")
    conv_log.setLevel(logging.INFO)
    conv_log.addHandler(steps)
    conv_log.propagate = False
    ray_init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    configs = {"spark.sql.execution.arrow.maxRecordsPerBatch": str(args.batch_rows)} if args.batch_rows else {}
    spark = ftbridge.init_spark("breakdown", num_executors=2, executor_cores=1, executor_memory="1GB",
                                configs=configs)
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.range(0, args.rows, numPartitions=8).selectExpr(
        "id", "id * 3 as a", "cast(id as double) * 1.5 as b", "concat('s-', cast(id as string)) as s")
    target = SpillTarget.resolve(None)
    catalog = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"ftbridge-breakdown-{os.getpid()}.duckdb")

    def spill_only(level, tag):
        batches = ArrowBatches(df, level)
        t0 = time.perf_counter()
        spill_all(batches, target, tag)
        took = time.perf_counter() - t0
        batches.unpersist()
        delete_conversion_dirs(target, tag)
        return took

    def end_to_end():
        t0 = time.perf_counter()
        ds = ftbridge.from_spark_recoverable(df, catalog=catalog)
        assert ds.count() == args.rows
        took = time.perf_counter() - t0
        ftbridge.release(ds, catalog=catalog)
        return took

    def floor(_):
        df._jdf.toArrowBatchRdd().count()

    paths = {
        "floor": floor,
        "spill, no cache": lambda i: spill_only(StorageLevel.NONE, f"bd-none-{i}"),
        "spill, cached": lambda i: spill_only(StorageLevel.MEMORY_AND_DISK, f"bd-cached-{i}"),
        "end to end": lambda i: end_to_end(),
    }
    times: dict[str, list[float]] = {k: [] for k in paths}
    split: dict[str, list[float]] = {"spill": [], "catalog": [], "read": []}
    try:
        for rep in range(args.reps + 1):
            for name in (list(paths) if rep % 2 == 0 else list(reversed(paths))):
                t0 = time.perf_counter()
                took = paths[name](rep)
                took = took if took is not None else time.perf_counter() - t0
                if rep > 0:  # the first round warms up
                    times[name].append(took)
                    if name == "end to end":
                        for key, value in steps.last.items():
                            split[key].append(value)
    finally:
        ftbridge.stop_spark()
        ray.shutdown()
        for path in (catalog, catalog + ".wal"):
            if os.path.exists(path):
                os.remove(path)
    floor = median(times["floor"])
    print(f"{args.rows:,} rows, 8 partitions, batch rows {args.batch_rows or 'default'}; medians of {args.reps}")
    for name, xs in times.items():
        print(f"  {name:18s} {median(xs):6.2f} s   {median(xs) / floor:5.2f}x floor")
    print("  end to end, split: " + ", ".join(f"{k} {median(v):.2f} s" for k, v in split.items()))


if __name__ == "__main__":
    main()
