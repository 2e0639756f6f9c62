"""Where a recoverable conversion's time goes, step by step, against Spark's own floor.

    ./dev bench breakdown [--rows 4000000] [--reps 5] [--batch-rows 0] [--tiny-reps 20]

One process, Spark on Ray with 2 executors x 1 core (Ray with 4 logical CPUs), the DataFrame
of `./dev bench convert`. Each repetition (after one warm-up) times, alternating order:
  floor            Spark's Arrow batches made and counted in the executors (df._jdf.toArrowBatchRdd())
  spill, no cache  the spill job alone with StorageLevel.NONE (batches made and written to files)
  spill, cached    the spill job alone with MEMORY_AND_DISK (the default: batches also kept by Spark)
  end to end       ftbridge.from_spark_recoverable(df) (default level) + count, with its own
                   log line split into setup / spill (the reads of partitions written by then
                   run during it) / read (what is left of them) / record (the catalog's record,
                   sent after the job and waited for after the reads)
and prints medians and each over the floor. Then the fixed cost: the same DataFrame as 8
partitions of one row, `--tiny-reps` rounds (after two warm-ups) alternating the floor and
the end-to-end conversion, each conversion split in milliseconds (setup: the argument checks,
the catalog writer and the read workers' warm-up; rebuilder: its registration, before the job;
spill: Spark's job, with the reads of the partitions it has written; plan: the record made;
read: the record sent and the Dataset made once the job has ended; record: the wait for the
catalog writer's journal of the record after the reads, which it overlaps; count) and `release` timed after it.
Target: fixed cost (end to end, median) <= 0.1 s, printed met / NOT met. The figures go to
benchmarks/results/breakdown.json with the date, commit and command.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import alternating, median, ray_init, write_results

FIXED_COST_TARGET_S = 0.1
PARTS = ("setup", "spill", "plan", "rebuilder", "read", "record")  # of the conversion's INFO line
STEP = re.compile(r"(setup|spill|plan|rebuilder|read|record) ([\d.]+)s")


class _Steps(logging.Handler):
    """Picks the setup / spill / plan / rebuilder / read / record split out of the conversion's
    INFO line."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.last: dict[str, float] = {}

    def emit(self, record):
        found = dict((k, float(v)) for k, v in STEP.findall(record.getMessage()))
        if "spill" in found and "read" in found:
            self.last = found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch-rows", type=int, default=0)
    parser.add_argument("--tiny-reps", type=int, default=20)
    args = parser.parse_args()
    if args.rows < 1 or args.reps < 1 or args.tiny_reps < 1 or args.batch_rows < 0:
        parser.error("--rows, --reps and --tiny-reps must be at least 1, --batch-rows at least 0")

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

    def frame(rows):
        return spark.range(0, rows, numPartitions=8).selectExpr(
            "id", "id * 3 as a", "cast(id as double) * 1.5 as b", "concat('s-', cast(id as string)) as s")

    df = frame(args.rows)
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
    split: dict[str, list[float]] = {"setup": [], "spill": [], "read": [], "record": []}
    tiny = frame(8)
    fixed: dict[str, list[float]] = {k: [] for k in ("floor", "end to end", *PARTS, "count", "release")}
    try:
        for rep, name, counted in alternating(paths, args.reps, warmup=1):
            t0 = time.perf_counter()
            took = paths[name](rep)
            took = took if took is not None else time.perf_counter() - t0
            if counted:
                times[name].append(took)
                if name == "end to end":
                    for key in split:
                        split[key].append(steps.last.get(key, 0.0))
        for _, name, counted in alternating(("floor", "end to end"), args.tiny_reps, warmup=2):
            t0 = time.perf_counter()
            if name == "floor":
                tiny._jdf.toArrowBatchRdd().count()
                took = {"floor": time.perf_counter() - t0}
            else:
                ds = ftbridge.from_spark_recoverable(tiny, catalog=catalog)
                t1 = time.perf_counter()
                if ds.count() != 8:
                    raise SystemExit("the tiny conversion did not count 8 rows")
                t2 = time.perf_counter()
                ftbridge.release(ds, catalog=catalog)
                took = {"end to end": t2 - t0, "count": t2 - t1, "release": time.perf_counter() - t2,
                        **{k: steps.last.get(k, 0.0) for k in PARTS}}
            if counted:
                for key, value in took.items():
                    fixed[key].append(value)
    finally:
        ftbridge.stop_spark()
        ray.shutdown()
        for path in (catalog, catalog + ".wal"):
            if os.path.exists(path):
                os.remove(path)
    floor = median(times["floor"])
    lines = [f"{args.rows:,} rows, 8 partitions, batch rows {args.batch_rows or 'default'}; medians of {args.reps}"]
    for name, xs in times.items():
        lines.append(f"  {name:18s} {median(xs):6.2f} s   {median(xs) / floor:5.2f}x floor")
    lines.append("  end to end, split: " + ", ".join(f"{k} {median(v):.3f} s" for k, v in split.items()))
    fixed_ms = {k: round(1000 * median(v), 1) for k, v in fixed.items()}
    cost = fixed_ms["end to end"] / 1000
    lines.append(f"fixed cost: 8 partitions of one row, medians of {args.tiny_reps} (ms)")
    lines.append("  " + ", ".join(f"{k} {v:.1f}" for k, v in fixed_ms.items()))
    accounted = sum(fixed_ms[k] for k in (*PARTS, "count"))
    lines.append(f"  end to end less its parts: {fixed_ms['end to end'] - accounted:.1f} ms (the call's own "
                 "bookkeeping and the medians' rounding)")
    lines.append(f"  target: fixed cost <= {FIXED_COST_TARGET_S} s: {cost:.3f} s, "
                 f"{'met' if cost <= FIXED_COST_TARGET_S else 'NOT met'}")
    print("\n".join(lines))
    command = "./dev bench breakdown" + "".join(
        f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v != parser.get_default(k))
    out = write_results("breakdown", command, rows=args.rows, reps=args.reps, batch_rows=args.batch_rows,
                        tiny_reps=args.tiny_reps,
                        medians={**{k: round(median(v), 3) for k, v in times.items()},
                                 **{f"end to end: {k}": round(median(v), 3) for k, v in split.items()}},
                        summary={**{f"fixed cost: {k} (ms)": v for k, v in fixed_ms.items()},
                                 "fixed cost target met": cost <= FIXED_COST_TARGET_S},
                        output=lines)
    print(f"results: {out}")

if __name__ == "__main__":
    main()
