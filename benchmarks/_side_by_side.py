"""One process of `./dev bench raydp`: start Spark on Ray with one engine, time it, convert.

    python _side_by_side.py ENGINE JSON_SPEC     (ENGINE: ftbridge | raydp)

Runs in the RayDP venv (RayDP 1.6.5, its PySpark and Ray) for both engines, so they share the
same Spark, Ray and Arrow; it imports only what its engine needs. Prints one JSON line.
Timed, in order:
  ray_init_s       ray.init of an embedded Ray with the given CPUs
  init_spark_s     the engine's init_spark
  first_job_s      a first Spark job with a task per executor core (RayDP's init_spark returns
                   before its executors exist; ftbridge's returns when they have registered)
  first_conversion_s   the first recoverable conversion (cold JVM code paths, cold Ray workers)
then, after `warmup` rounds, `reps` rounds alternating the paths:
  floor            Spark's own Arrow batches for the DataFrame, counted in the JVM, not moved
  recoverable      ftbridge.from_spark_recoverable / raydp.spark.from_spark_recoverable, then count
  plain            ftbridge.from_spark / ray.data.from_spark (in RayDP 1.6.5 the same recoverable path)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from _common import alternating  # stdlib only, so it imports in RayDP's venv too

# This folder holds benchmarks/raydp.py, which would shadow the `raydp` package.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

ADD_OPENS = ["java.base/java.lang", "java.base/java.lang.invoke", "java.base/java.lang.reflect", "java.base/java.io",
             "java.base/java.net", "java.base/java.nio", "java.base/java.util", "java.base/java.util.concurrent",
             "java.base/java.util.concurrent.atomic", "java.base/sun.nio.ch", "java.base/sun.nio.cs",
             "java.base/sun.security.action", "java.base/sun.util.calendar", "java.security.jgss/sun.security.krb5",
             "java.base/jdk.internal.ref", "java.base/jdk.internal.misc", "java.base/java.math", "java.base/java.text",
             "java.base/java.time", "java.base/java.util.regex"]


def make_df(spark, rows: int, partitions: int):
    return spark.range(0, rows, numPartitions=partitions).selectExpr(
        "id", "id * 3 as a", "cast(id as double) * 1.5 as b", "concat('s-', cast(id as string)) as s")


def floor(df) -> int:
    """Spark's Arrow batches for `df`, made and counted in the executors (the floor of any export)."""
    return df._jdf.toArrowBatchRdd().count()


class Ftbridge:
    def __init__(self, spec):
        import ftbridge

        self.ft = ftbridge
        self.catalog = os.path.join(spec["tmp"], "catalog.duckdb")

    def init_spark(self, spec):
        return self.ft.init_spark("bench", num_executors=spec["executors"], executor_cores=spec["cores"],
                                  executor_memory=spec["memory"], configs=spec["configs"])

    def recoverable(self, df):
        ds = self.ft.from_spark_recoverable(df, catalog=self.catalog)
        n = ds.count()
        self.ft.release(ds, catalog=self.catalog)
        return n

    def plain(self, df):
        return self.ft.from_spark(df, catalog=self.catalog).count()

    def stop(self):
        self.ft.stop_spark()


class RayDP:
    def __init__(self, spec):
        import raydp
        import raydp.spark

        self.raydp = raydp

    def init_spark(self, spec):
        # Java 17 needs these in every RayDP JVM (RayDP 1.6.5 adds none itself).
        opts = " ".join(f"--add-opens={m}=ALL-UNNAMED" for m in ADD_OPENS)
        configs = {"spark.driver.extraJavaOptions": opts, "spark.executor.extraJavaOptions": opts,
                   "spark.ray.raydp_app_master.extraJavaOptions": opts, **spec["configs"]}
        return self.raydp.init_spark("bench", spec["executors"], spec["cores"], spec["memory"], configs=configs)

    def recoverable(self, df):
        ds = self.raydp.spark.from_spark_recoverable(df)
        n = ds.count()
        self.raydp.spark.release_spark_recoverable(df)
        return n

    def plain(self, df):
        import ray

        return ray.data.from_spark(df).count()

    def stop(self):
        self.raydp.stop_spark()


def main(engine_name: str, spec: dict) -> None:
    logging.basicConfig(level=logging.ERROR)
    out: dict = {"engine": engine_name}
    t0 = time.perf_counter()
    import pyspark
    import ray

    extra = {}
    if engine_name == "raydp":  # RayDP's executors are Ray Java workers: their JVM flags come from the job
        extra["job_config"] = ray.job_config.JobConfig(jvm_options=[f"--add-opens={m}=ALL-UNNAMED" for m in ADD_OPENS])
    ray.init(num_cpus=spec["cpus"], include_dashboard=False, log_to_driver=False, logging_level="ERROR", **extra)
    out["ray_init_s"] = time.perf_counter() - t0
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    engine = (Ftbridge if engine_name == "ftbridge" else RayDP)(spec)
    out["versions"] = {"ray": ray.__version__, "pyspark": pyspark.__version__}
    t0 = time.perf_counter()
    spark = engine.init_spark(spec)
    out["init_spark_s"] = time.perf_counter() - t0
    spark.sparkContext.setLogLevel("ERROR")
    slots = spec["executors"] * spec["cores"]
    t0 = time.perf_counter()
    assert spark.range(0, 10**6, numPartitions=slots).count() == 10**6
    out["first_job_s"] = time.perf_counter() - t0
    rows = spec["rows"]
    df = make_df(spark, rows, spec["partitions"])
    t0 = time.perf_counter()
    assert engine.recoverable(df) == rows
    out["first_conversion_s"] = time.perf_counter() - t0
    paths = {"floor": lambda: floor(df), "recoverable": lambda: engine.recoverable(df),
             "plain": lambda: engine.plain(df)}
    for name in paths:
        out[f"{name}_s"] = []
    for _, name, counted in alternating(paths, spec["reps"], spec["warmup"]):
        t0 = time.perf_counter()
        got = paths[name]()
        took = time.perf_counter() - t0
        if name != "floor":
            assert got == rows, (name, got, rows)
        if counted:
            out[f"{name}_s"].append(took)
    engine.stop()
    ray.shutdown()
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
