"""`ftbridge demo`: the main job, end to end, on an embedded local multi-node Ray cluster.

Spark runs on Ray; a job survives a killed executor; a DataFrame becomes a recoverable
Dataset; we delete a spill file, kill an executor and remove a Ray node with its blocks
and its spill disk; the consumer still reads every row exactly once, checked row by row
against a fault-free reference; then the audit shows what was lost and rebuilt.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time

import ray
import ray.data
from ray.cluster_utils import Cluster
from rich.table import Table

import ftbridge
from ftbridge.adapters import ray as ray_adapter
from ftbridge.cli.output import console, short_paths
from ftbridge.cluster import scratch
from ftbridge.cluster.session import wait_for_executors
from ftbridge.cluster.spark_on_ray import route_ray_output
from ftbridge.common.config import settings
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from ftbridge.convert.spill.target import SpillTarget
from ftbridge.lineage import queries
from ftbridge.lineage.audit import summarize
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.kinds import EventKind

NODE_RESOURCE = "ftbridge_demo_node"


def _step(text: str) -> None:
    console.print(f"\n[bold cyan]▶ {text}[/]")


def _ok(text: str) -> None:
    console.print(f"  [green]✔[/] {text}")


def _bad(text: str) -> None:
    console.print(f"  [red]✘[/] {text}")


def _word_count_with_kill(ftbridge, spark) -> bool:
    words = ["look", "spark", "tutorial", "spark", "look", "python"] * 50

    def slow_upper(w):
        time.sleep(0.05)
        return (w, 1)

    result: dict = {}
    job = threading.Thread(target=lambda: result.setdefault(
        "counts", dict(spark.sparkContext.parallelize(words, 30).map(slow_upper).reduceByKey(lambda a, b: a + b)
                       .collect())))
    victim = ftbridge.executors()[0]
    job.start()
    time.sleep(2.0)
    os.kill(victim.actor_pid, signal.SIGKILL)
    _ok(f"killed executor actor {victim.actor_name} (pid {victim.actor_pid}, JVM {victim.jvm_pid}) mid-job")
    job.join(timeout=300)
    expected = {"look": 100, "spark": 100, "tutorial": 50, "python": 50}
    good = result.get("counts") == expected
    (_ok if good else _bad)(f"word count finished: {result.get('counts')}")
    wait_for_executors(2)
    _ok("Ray restarted the executor actor; it rejoined Spark")
    return good


def _audit_table(catalog_path: str, conversion_id: str) -> None:
    cat = Catalog(catalog_path)
    conv, parts = cat.load(conversion_id)
    with cat.read() as con:
        events = queries.events(con, conversion_id)
    summary = summarize(conv, parts, events)
    table = Table(title=f"audit of conversion {conversion_id[:12]}")
    for col in ("time", "event", "partition", "seconds", "detail"):
        table.add_column(col, overflow="fold")
    for e in events:
        if e["kind"] == EventKind.READ:
            continue
        table.add_row(str(e["started_at"])[11:23], e["kind"], "" if e["partition_id"] is None else str(e["partition_id"]),
                      f"{e['duration_s']:.3f}", short_paths(e["detail"])[:90])
    console.print(table)
    ttr = summary.time_to_recover_s
    console.print(f"  partitions {summary.partitions.to_dict()}; {summary.rebuilt} rebuilt from Spark, "
                  f"{summary.reconstructed} blocks reconstructed by Ray; time to recover median "
                  f"{ttr.median}s, worst {ttr.worst}s")


def _start_spark():
    t0 = time.monotonic()
    spark = ftbridge.init_spark("ftbridge-demo", num_executors=2, executor_cores=1, executor_memory="1GB",
                                executor_resources={NODE_RESOURCE: 1},
                                configs={"spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    _ok(f"Spark {spark.version} up in {time.monotonic() - t0:.1f}s")
    for e in ftbridge.executors():
        console.print(f"    executor {e.executor_id}: actor {e.actor_name} pid {e.actor_pid}, JVM {e.jvm_pid}, "
                      f"node {e.node_id[:12]}")
    return spark


def _conversion_survives_faults(spark, cluster, nodes, rows: int, catalog_path: str) -> list[bool]:
    """Failures 2 and 3 and a stop of Spark, each checked row by row against a fault-free reference."""
    checks = []
    _step(f"recoverable conversion of {rows:,} rows")
    df = spark.range(0, rows, numPartitions=8).selectExpr(
        "id", "id * 31 % 1000 as a", "cast(id as double) / 7 as b", "concat('row-', sha1(cast(id as string))) as s")
    reference = spark_to_arrow(df)
    t0 = time.monotonic()
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog_path, name="demo")
    cid = ftbridge.conversion_id(ds)
    _ok(f"conversion {cid} ready in {time.monotonic() - t0:.1f}s; catalog {catalog_path}")
    with Catalog(catalog_path).read() as con:
        parts = queries.partitions(con, cid)
        block_node = {e["partition_id"]: e["node_id"] for e in queries.events(con, cid)
                      if e["kind"] == EventKind.READ}

    _step("failure 2: delete a spill file, then reopen the conversion from the catalog")
    os.remove(parts[0]["path"])
    _ok(f"deleted {parts[0]['path']}")
    checks.append(_checked("reopened and read", reference,
                           ftbridge.open_recoverable(cid, catalog=catalog_path)))

    _step("failure 3: remove a Ray node holding blocks, and wipe its spill disk")
    by_id = {n.node_id: n for n in nodes}
    victim = next((node for node in block_node.values() if node in by_id), None) or next(iter(by_id))
    lost = sorted(p for p, n in block_node.items() if n == victim)
    cluster.remove_node(by_id[victim])
    shutil.rmtree(os.path.join(SpillTarget.resolve(None).root, victim), ignore_errors=True)
    _ok(f"removed node {victim[:12]} (blocks of partitions {lost}) and deleted its spill folder")
    checks.append(_checked("consumer read everything", reference, ds))

    _step("stop Spark, keep the data: the Dataset stays readable")
    ftbridge.stop_spark(cleanup_data=False)
    checks.append(_checked("after stop_spark", reference, ds))

    _step("audit")
    _audit_table(catalog_path, cid)
    ftbridge.release(cid, catalog=catalog_path)
    return checks


def _checked(what: str, reference, ds) -> bool:
    result = check(reference, read_all(ds))
    (_ok if result.ok else _bad)(f"{what}: {result}")
    return result.ok


def run_demo(rows: int = 200_000, catalog: str | None = None) -> int:
    """The demo, start to end; 0 when every row-by-row check passed."""
    catalog_path = Catalog(catalog).path
    checks: list[bool] = []
    _step("starting an embedded Ray cluster: a head node and 3 worker nodes")
    cluster = Cluster(initialize_head=True, head_node_args=ray_adapter.head_node_args(num_cpus=2,
                                                                                       include_dashboard=False))
    nodes = [cluster.add_node(num_cpus=1, resources={NODE_RESOURCE: 1}) for _ in range(3)]
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address, log_to_driver=settings().ray_log_to_driver, logging_level=logging.ERROR)
        route_ray_output()
        ray.data.DataContext.get_current().enable_progress_bars = False
        _ok(f"Ray {ray.__version__}: {len(ray.nodes())} nodes, {ray.cluster_resources().get('CPU'):g} CPUs")
        console.print(f"  [dim]Spark's and Ray's own output: {scratch.log_dir()} (`ftbridge -v demo` shows it)[/]")
        _step("starting Spark on Ray: 2 executors, each in its own Ray actor")
        spark = _start_spark()
        _step("failure 1: kill an executor actor in the middle of a word count")
        checks.append(_word_count_with_kill(ftbridge, spark))
        checks += _conversion_survives_faults(spark, cluster, nodes, rows, catalog_path)
    finally:
        try:
            ftbridge.stop_spark(cleanup_data=False)
        finally:
            ray.shutdown()
            cluster.shutdown()
    good = all(checks) and len(checks) == 4
    console.print(f"\n[bold {'green' if good else 'red'}]{'demo passed' if good else 'demo FAILED'}: "
                  f"{sum(checks)}/4 checks[/]  (run `ftbridge audit` to see the catalog)")
    return 0 if good else 1
