"""Soak: many conversions and releases in one driver, with executors killed and nodes replaced.

    ./dev bench soak [--conversions 1000] [--kill-every 20] [--replace-every 100]

A local multi-node Ray cluster (head + 2 worker nodes), Spark on Ray with 2 executors. Each
round converts a 50,000-row DataFrame recoverably, reads it back, checks it row by row (ids
and content) against the rows it must hold, every 10th round also against Spark's own copy,
and releases it. Every `--kill-every`-th round
an executor actor is SIGKILLed first; every `--replace-every`-th round a worker node holding an
executor is removed and a fresh one added. After each round it samples the driver's RSS and
open file descriptors, the Ray objects it holds references to (after a `gc.collect()`: Ray Data's
Datasets sit in reference cycles, so their blocks' refs go at Python's next collection, not at
`del`), the bytes ftbridge keeps in the temp dir (`$TMPDIR/ftbridge-$UID`
without logs and spill), its log folders, the spill root, the catalog file and
the round's time (every `--gc-every`-th round it prunes released history, as an operator's daily
`ftbridge gc --events-older-than` would); it prints the first and last decile's medians, which should match
(target: driver RSS grows at most 10 MiB from the first decile to the last, fds and objects flat),
and keeps them in benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(__file__))

import pyarrow as pa
import ray
import ray.data
from _common import ray_init, rss_bytes, write_results
from ray.cluster_utils import Cluster

import ftbridge
from ftbridge.adapters import ray as ray_adapter
from ftbridge.cluster import scratch
from ftbridge.cluster.session import wait_for_executors
from ftbridge.common.config import settings
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from ftbridge.convert.spill.target import SpillTarget
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.retention import file_bytes, prune

NODE = "soak_node"
ROWS = 50_000


def tree_bytes(root: str, skip: tuple = ()) -> int:
    total = 0
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if os.path.join(d, x) not in skip]
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_size
            except OSError:
                pass
    return total


def expected_rows(i: int, n: int = ROWS) -> pa.Table:
    """The rows round `i`'s DataFrame holds, built without Spark."""
    ids = range(n)
    return pa.table({"id": pa.array(ids, pa.int64()), "s": [f"round-{i}-{k}" for k in ids],
                     "x": pa.array([k * 3 for k in ids], pa.int64())})


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def replace_node(cluster, nodes: list) -> None:
    """Remove the worker node of the first executor and add a fresh one; wait for 2 executors."""
    victim_id = ftbridge.executors()[0].node_id
    victim = next(n for n in nodes if n.node_id == victim_id)
    nodes.remove(victim)
    cluster.remove_node(victim)
    nodes.append(cluster.add_node(num_cpus=1, resources={NODE: 1}))
    cluster.wait_for_nodes()
    wait_for_executors(2, timeout_s=180)


def _same(batch: pa.Table) -> pa.Table:
    return batch


def plain_ray_data(rounds: int) -> dict:
    """The baseline: the same rounds through Ray Data alone (no Spark, no ftbridge) in a fresh
    process: one `from_arrow(...).map_batches(...).materialize()` and read per round (a map
    operator, as a conversion's read tasks are one). What a driver grows by per Ray Data
    execution, whoever runs it."""
    ray_init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    rss = []
    for i in range(1, rounds + 1):
        rows = expected_rows(i)
        ds = ray.data.from_arrow([rows.slice(k * ROWS // 4, ROWS // 4) for k in range(4)]).map_batches(
            _same, batch_format="pyarrow").materialize()
        assert check(rows, pa.concat_tables(ray.get(list(ds.to_arrow_refs())))).ok, f"round {i}"
        del ds
        gc.collect()  # as the soak does
        rss.append(rss_bytes())
    ray.shutdown()
    k = max(1, rounds // 10)
    return {"rounds": rounds, "rss growth first -> last decile (MiB)":
            round((statistics.median(rss[-k:]) - statistics.median(rss[:k])) / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plain-ray-data", type=int, default=0, metavar="N",
                        help="only the baseline: N rounds through Ray Data alone; prints its figures as JSON")
    parser.add_argument("--conversions", type=int, default=1000)
    parser.add_argument("--kill-every", type=int, default=20)
    parser.add_argument("--replace-every", type=int, default=100)
    parser.add_argument("--gc-every", type=int, default=50,
                        help="prune released history as a daily `ftbridge gc --events-older-than` would")
    args = parser.parse_args()
    if args.plain_ray_data:
        print(json.dumps(plain_ray_data(args.plain_ray_data)))
        return
    baseline = json.loads(subprocess.run([sys.executable, __file__, "--plain-ray-data", str(args.conversions)],
                                         capture_output=True, text=True, check=True, timeout=3600).stdout.splitlines()[-1])
    print(f"baseline, Ray Data alone: {baseline}", flush=True)
    workdir = tempfile.mkdtemp(prefix="ftbridge-soak-")
    catalog = os.path.join(workdir, "catalog.duckdb")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1, resources={NODE: 1}) for _ in range(2)]
    cluster.wait_for_nodes()
    ray_init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    spark = ftbridge.init_spark("soak", num_executors=2, executor_cores=1, executor_memory="512MB",
                                executor_resources={NODE: 1})
    spark.sparkContext.setLogLevel("ERROR")
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # each round's "Running Dataset" lines
    spill_root = SpillTarget.resolve(None).root
    root = scratch.root()  # everything ftbridge keeps in the temp dir; its logs are counted apart
    logs = settings().log_root
    samples, faults = [], {"executor_killed": 0, "node_replaced": 0, "spark_checks": 0}
    try:
        for i in range(1, args.conversions + 1):
            if i % args.replace_every == 0:
                replace_node(cluster, nodes)
                faults["node_replaced"] += 1
            elif i % args.kill_every == 0:
                os.kill(ftbridge.executors()[0].actor_pid, signal.SIGKILL)
                faults["executor_killed"] += 1
            df = spark.range(0, ROWS, numPartitions=4).selectExpr(
                "id", f"concat('round-{i}-', cast(id as string)) as s", "id * 3 as x")
            t0 = time.perf_counter()
            ds = ftbridge.from_spark_recoverable(df, catalog=catalog, name=f"soak-{i}")
            got = read_all(ds)
            took = time.perf_counter() - t0
            result = check(expected_rows(i), got)
            assert result.ok, f"round {i}: {result}"
            if i % 10 == 0:
                result = check(spark_to_arrow(df), got)
                faults["spark_checks"] += 1
                assert result.ok, f"round {i} against Spark: {result}"
            ftbridge.release(ds)
            del ds, got
            if i % args.gc_every == 0:
                prune(Catalog(catalog), timedelta(0))
            gc.collect()  # what is left is held, not waiting in a cycle for the collector
            samples.append({"round": i, "seconds": took, "rss": rss_bytes(), "fds": open_fds(),
                            "objects": ray_adapter.owned_object_count(),
                            "temp": tree_bytes(root, skip=(logs, spill_root)), "logs": tree_bytes(logs),
                            "spill": tree_bytes(spill_root), "catalog": file_bytes(catalog)})
            if i % 25 == 0:
                s = samples[-1]
                print(f"  round {i:4d}: {took:.2f}s  rss {s['rss'] / 2**20:.0f} MiB  fds {s['fds']}  "
                      f"temp {s['temp'] / 2**20:.1f} MiB  logs {s['logs'] / 2**20:.1f} MiB  spill {s['spill'] / 2**10:.0f} KiB  "
                      f"catalog {s['catalog'] / 2**20:.2f} MiB", flush=True)
    finally:
        ftbridge.stop_spark()
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = report(samples, faults)
    command = "./dev bench soak " + " ".join(sys.argv[1:])
    summary["plain Ray Data, same rounds: rss growth first -> last decile (MiB)"] = \
        baseline["rss growth first -> last decile (MiB)"]
    beyond = summary["rss growth first -> last decile (MiB)"] - baseline["rss growth first -> last decile (MiB)"]
    summary["rss growth beyond Ray Data's own (MiB)"] = round(beyond, 2)
    print(f"rss growth beyond Ray Data's own: {beyond:.1f} MiB")
    print("results: " + write_results("soak", command.strip(), conversions=len(samples), faults=faults,
                                      summary=summary))


def report(samples: list[dict], faults: dict) -> dict:
    k = max(1, len(samples) // 10)
    first, last = samples[:k], samples[-k:]

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    print(f"\n{len(samples)} conversions and releases; {faults}")
    print(f"{'':22}{'first decile':>14}{'last decile':>14}")
    summary = {}
    for key, unit, scale in (("seconds", "s", 1), ("rss", "MiB", 2**20), ("fds", "", 1), ("objects", "", 1),
                             ("temp", "MiB", 2**20), ("logs", "MiB", 2**20), ("spill", "KiB", 2**10), ("catalog", "MiB", 2**20)):
        label = key + (' (' + unit + ')' if unit else '')
        a, b = med(first, key) / scale, med(last, key) / scale
        print(f"{label:22}{a:14.2f}{b:14.2f}")
        summary[f"{label}: first decile"] = round(a, 3)
        summary[f"{label}: last decile"] = round(b, 3)
    summary["rss growth first -> last decile (MiB)"] = round((med(last, "rss") - med(first, "rss")) / 2**20, 2)
    return summary


if __name__ == "__main__":
    main()
