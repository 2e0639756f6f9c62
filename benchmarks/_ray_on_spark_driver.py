"""The driver of `./dev bench ray_on_spark`, on the head host of a Spark standalone cluster with Ray
started on it by `setup_ray_cluster` (see ray_on_spark.py). Prints one `RESULT {json}` line.

Each round, in an order that alternates, makes the same DataFrame a materialized Ray Dataset
and counts it, three ways:
  ftbridge   ftbridge.from_spark_recoverable (node-local spill, the JVM writer), then count
  parquet    df.write.parquet to a folder every host sees, ray.data.read_parquet().materialize()
  collect    df.toArrow() on the driver, ray.data.from_arrow(table).materialize()
and the driver's RSS after each path (collect holds the whole table in the driver).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import sys
import time

from _common import alternating  # this folder is the script's, so first on sys.path


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def read_trace(df, shared: str) -> dict:
    """One more conversion, and where its read went: for each partition, whether its read task ran
    on the node that holds its file (else a fetch task on that node served it), and the seconds
    each read took inside its task (the catalog's read events)."""
    import ftbridge
    from ftbridge.lineage import queries
    from ftbridge.lineage.catalog import Catalog
    from ftbridge.lineage.writer import flush

    catalog = os.path.join(shared, "catalog.duckdb")
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog)
    cid = ftbridge.conversion_id(ds)
    flush(Catalog(catalog))
    with Catalog(catalog).read() as con:
        nodes = {p["partition_id"]: p["node_id"] for p in queries.partitions(con, cid)}
        reads = [e for e in queries.events(con, cid) if e["kind"] == "read"]
    ftbridge.release(ds)
    first = min(e["started_at"] for e in reads)
    rows = [{"partition": e["partition_id"], "local": e["node_id"] == nodes.get(e["partition_id"]),
             "start_s": round((e["started_at"] - first).total_seconds(), 3), "took_s": round(e["duration_s"], 3)}
            for e in sorted(reads, key=lambda e: e["partition_id"])]
    local = [r["took_s"] for r in rows if r["local"]]
    remote = [r["took_s"] for r in rows if not r["local"]]
    return {"partitions": rows, "local_reads": len(local), "fetched_reads": len(remote),
            "local_median_s": statistics.median(local) if local else None,
            "fetched_median_s": statistics.median(remote) if remote else None}


def main(spec: dict) -> None:
    os.environ.pop("RAY_ADDRESS", None)
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(spec["master"]).appName("bench-ray-on-spark")
             .config("spark.executor.memory", "1g").config("spark.driver.memory", "2g")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    import ray
    import ray.data
    from ray.util.spark import setup_ray_cluster, shutdown_ray_cluster

    import ftbridge
    from ftbridge.adapters.ray import WORKER_POOL_CONFIG

    timing = logging.StreamHandler(sys.stderr)  # ftbridge's timing line per conversion
    timing.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logging.getLogger("ftbridge.convert.conversion").addHandler(timing)
    logging.getLogger("ftbridge.convert.conversion").setLevel(logging.INFO)

    parts: dict[str, list[float]] = {"convert": [], "count": [], "release": []}
    shared = spec["shared"]

    def via_ftbridge(df) -> int:
        t0 = time.perf_counter()
        ds = ftbridge.from_spark_recoverable(df, catalog=os.path.join(shared, "catalog.duckdb"))
        t1 = time.perf_counter()
        n = ds.count()
        t2 = time.perf_counter()
        ftbridge.release(ds)
        for name, took in zip(parts, (t1 - t0, t2 - t1, time.perf_counter() - t2)):
            parts[name].append(round(took, 3))
        return n

    def via_parquet(df) -> int:
        path = os.path.join(shared, "handoff.parquet")
        df.write.mode("overwrite").parquet(path)
        n = ray.data.read_parquet(path).materialize().count()
        shutil.rmtree(path, ignore_errors=True)
        return n

    def via_collect(df) -> int:
        return ray.data.from_arrow(df.toArrow()).materialize().count()

    paths = {"ftbridge": via_ftbridge, "parquet": via_parquet, "collect": via_collect}
    out: dict = {"spark": spark.version, "ray": ray.__version__, "cases": []}
    # Ray's worker pool as setup_ray_cluster leaves it ("ray": idle workers beyond one per CPU end
    # after 1 s, so each round's tasks start worker processes again), then with the head's
    # system config keeping a few ("kept": ftbridge's WORKER_POOL_CONFIG, as on clusters it starts).
    for pool in spec["pools"]:
        head = {"include_dashboard": False}
        if pool == "kept":
            head["system_config"] = dict(WORKER_POOL_CONFIG)
        setup_ray_cluster(max_worker_nodes=2, num_cpus_worker_node=2, num_gpus_worker_node=0, num_cpus_head_node=0,
                          memory_worker_node=1 << 30, object_store_memory_worker_node=600 << 20,
                          head_node_options=head)
        ray.init(log_to_driver=False, logging_level=logging.WARNING)
        ray.data.DataContext.get_current().enable_progress_bars = False
        for rows in spec["rows"]:
            df = spark.range(0, rows, numPartitions=spec["partitions"]).selectExpr(
                "id", "cast(id as double) * 1.5 as b", "concat('s-', cast(id as string)) as s")
            df.cache().count()  # every path starts from the same cached frame
            times: dict[str, list[float]] = {k: [] for k in paths}
            rss: dict[str, list[float]] = {k: [] for k in paths}
            for _, name, counted in alternating(paths, spec["reps"], spec["warmup"]):
                started = time.perf_counter()
                n = paths[name](df)
                took = time.perf_counter() - started
                if n != rows:
                    raise SystemExit(f"{name} counted {n} rows, not {rows}")
                if counted:
                    times[name].append(round(took, 3))
                    rss[name].append(round(rss_mib(), 1))
            print(f"{pool} {rows}: {spec['warmup'] + spec['reps']} rounds done", file=sys.stderr, flush=True)
            med = {k: statistics.median(v) for k, v in times.items()}
            case = {"pool": pool, "rows": rows, "nodes": len([n for n in ray.nodes() if n["Alive"]]),
                    "times_s": times, "median_s": med, "driver_rss_mib": rss,
                    "ratio_ftbridge_to_collect": round(med["ftbridge"] / med["collect"], 2),
                    "ratio_ftbridge_to_parquet": round(med["ftbridge"] / med["parquet"], 2),
                    "ftbridge_parts_median_s": {k: statistics.median(v[spec["warmup"]:]) for k, v in parts.items()}}
            for v in parts.values():
                v.clear()
            case["read_trace"] = read_trace(df, shared)
            out["cases"].append(case)
            print(f"{pool} {rows}: the last conversion's timing follows", file=sys.stderr, flush=True)
            df.unpersist()
        ray.shutdown()
        shutdown_ray_cluster()
    spark.stop()
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
