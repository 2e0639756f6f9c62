"""The driver of tests/hosts/test_hosts.py: a PySpark + ftbridge program on the head host.

Each step prints one JSON line ({"step": ...}) and, where the test injects a fault, waits for
the test's go-file (`$FTBRIDGE_HOSTS_SHARED/go-<step>`) before it goes on, so every fault lands
while the work it hits is under way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time

SHARED = os.environ["FTBRIDGE_HOSTS_SHARED"]
WAIT_S = 300.0


def say(step: str, **payload) -> None:
    print(json.dumps({"step": step, **payload}, default=str), flush=True)


def wait_go(step: str) -> dict:
    path = os.path.join(SHARED, f"go-{step}")
    deadline = time.monotonic() + WAIT_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test did not answer step {step!r} within {WAIT_S:.0f}s")
        time.sleep(0.05)
    with open(path) as f:
        return json.loads(f.read() or "{}")


ROWS, PARTS = 200_000, 8


def frame(spark, seed: int):
    """The drivers' DataFrame: ids, a column that depends on `seed`, a 40-character hash."""
    return spark.range(0, ROWS, numPartitions=PARTS).selectExpr(
        "id", f"(id * {seed}) % 1009 as a", "sha1(cast(id as string)) as h")


def catalog_rows(catalog: str, cid: str) -> dict:
    """The conversion's partition rows (with the host of each file's Ray node) and its events."""
    import ray

    from ftbridge.lineage import queries
    from ftbridge.lineage.catalog import Catalog
    from ftbridge.lineage.writer import flush

    flush(Catalog(catalog))
    with Catalog(catalog).read() as con:
        parts = queries.partitions(con, cid)
        events = queries.events(con, cid)
    nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
    return {"parts": [{"id": p["partition_id"], "path": p["path"], "node": p["node_id"],
                       "host": nodes.get(p["node_id"]), "state": p["state"]} for p in parts],
            "events": [{"kind": e["kind"], "partition": e["partition_id"], "detail": e["detail"],
                        "at": e["started_at"].timestamp(), "duration_s": e["duration_s"], "source": e["source"]}
                       for e in events]}


def say_checked(catalog: str, step: str, cid: str, result, **extra) -> None:
    """The step, with the row check's outcome and the conversion's catalog rows."""
    say(step, cid=cid, ok=result.ok, result=str(result),
        checksum_ok=result.checksum_read == result.checksum_expected, **extra, **catalog_rows(catalog, cid))


def main() -> None:
    import pyarrow as pa
    import ray

    import ftbridge
    from ftbridge.chaos.scenarios import slowed
    from ftbridge.cluster import session
    from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
    from ftbridge.lineage import queries
    from ftbridge.lineage.catalog import Catalog
    from ftbridge.lineage.writer import flush

    catalog = os.environ["FTBRIDGE_CATALOG"]
    # For step 1b, made before Spark takes every CPU (Ray Data's from_arrow runs a task): its
    # blocks are put by this driver, so they are on the head, where no executor runs.
    ids = pa.array(range(200_000), pa.int64())
    staged_reference = pa.table({"id": ids, "h": [hashlib.sha1(str(i).encode()).hexdigest() for i in range(200_000)]})
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    staged_source = ray.data.from_arrow([staged_reference.slice(i * 25_000, 25_000) for i in range(8)])
    spark = ftbridge.init_spark("hosts", num_executors=2, executor_cores=1, executor_memory="512m")
    ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
    say("started", executors={e.executor_id: ips[e.node_id] for e in ftbridge.executors()})

    def read_through(ds, step: str):
        """Read `ds` as a trainer would; after the first batch, let the test inject its fault."""
        it = iter(ds.iter_batches(batch_size=2000, batch_format="pyarrow", prefetch_batches=0))
        tables = [pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b for b in [next(it)]]
        say(step, rows_so_far=tables[0].num_rows)
        wait_go(step)
        started = time.monotonic()
        tables.extend(pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b for b in it)
        return pa.concat_tables(tables), time.monotonic() - started

    # 1. Files on every host, freed on every host.
    ds = ftbridge.from_spark_recoverable(frame(spark, 3))
    cid = ftbridge.conversion_id(ds)
    say("converted", cid=cid, **catalog_rows(catalog, cid))
    wait_go("converted")
    freed = ftbridge.release(ds)
    say("released", cid=cid, freed=freed, **catalog_rows(catalog, cid))
    wait_go("released")

    # 1b. Ray -> Spark, node-local staging: the blocks are on the head (the driver put them
    # there; no executor runs there). Fault-free, so the audit must show no recovery.
    df = ftbridge.to_spark(staged_source, spark)
    cid = ftbridge.conversion_id(df)
    result = check(staged_reference, spark_to_arrow(df))
    say_checked(catalog, "to-spark", cid, result)
    wait_go("to-spark")
    freed = ftbridge.release(df)
    say("to-spark-released", cid=cid, freed=freed, **catalog_rows(catalog, cid))
    wait_go("to-spark-released")

    # 1c. Both directions through a folder every host sees (a shared `staging_dir` / `spill_dir`):
    # no block staged again, no recovery, every file freed; the bytes moved are the figures.
    shared_dir = os.path.join(SHARED, "shared-files")
    df = ftbridge.to_spark(staged_source, spark, staging_dir=shared_dir)
    cid = ftbridge.conversion_id(df)
    result = check(staged_reference, spark_to_arrow(df))
    say_checked(catalog, "to-spark-shared", cid, result, dir=shared_dir)
    wait_go("to-spark-shared")
    freed = ftbridge.release(df)
    reference = spark_to_arrow(frame(spark, 3))
    ds = ftbridge.from_spark_recoverable(frame(spark, 3), spill_dir=shared_dir)
    cid = ftbridge.conversion_id(ds)
    result = check(reference, read_all(ds))
    say_checked(catalog, "from-spark-shared", cid, result, staged_freed=freed)
    wait_go("from-spark-shared")
    freed = ftbridge.release(ds)
    say("shared-released", cid=cid, freed=freed)
    wait_go("shared-released")

    # 2. A host crashes (its disk wiped) during a materialized read.
    df = frame(spark, 5)
    reference = spark_to_arrow(df)
    ds = ftbridge.from_spark_recoverable(df)
    cid = ftbridge.conversion_id(ds)
    say("converted-crash", cid=cid, **catalog_rows(catalog, cid))
    wait_go("converted-crash")
    table, seconds = read_through(ds, "reading-crash")
    result = check(reference, table)
    # The Dataset in use kept its blocks; opening the conversion again needs the lost files.
    started = time.monotonic()
    again = check(reference, read_all(ftbridge.open_recoverable(cid)))
    say("read-after-crash", cid=cid, ok=result.ok and again.ok, result=f"{result}; reopened: {again}",
        seconds=seconds, reopen_seconds=time.monotonic() - started,
        checksum_ok=result.checksum_read == result.checksum_expected == again.checksum_read, **catalog_rows(catalog, cid))
    wait_go("read-after-crash")  # the test restarts the host
    session.wait_for_executors(2)

    # 2b. A host crashes (its disk wiped) while the spill job runs: each partition's first row
    # sleeps 1.5 s in its executor (a filter that keeps every row), so the job lasts ~6 s.
    df = frame(spark, 11)
    reference = spark_to_arrow(df)
    slow = slowed(df, sleep_ms=1500, fast=0, per=25_000)
    say("spilling-crash")
    ds = ftbridge.from_spark_recoverable(slow)
    returned_at = time.time()
    cid = ftbridge.conversion_id(ds)
    result = check(reference, read_all(ds))
    say_checked(catalog, "spilled-crash", cid, result, returned_at=returned_at)
    wait_go("spilled-crash")  # the test restarts the host
    session.wait_for_executors(2)

    # 2c. A slow link: the same conversion and read at full speed, then with one worker host's
    # cable throttled by the test (the figures say how much slower; every row is checked).
    def timed(seed: int) -> tuple[float, object, str]:
        df = frame(spark, seed)
        reference = spark_to_arrow(df)
        started = time.monotonic()
        ds = ftbridge.from_spark_recoverable(df)
        result = check(reference, read_all(ds))
        seconds = time.monotonic() - started
        ftbridge.release(ds)
        return seconds, result, ftbridge.conversion_id(ds)

    full_s, result, _ = timed(13)
    say("slow-link", full_seconds=full_s, ok=result.ok, result=str(result))
    wait_go("slow-link")  # the test slows one worker host's link
    slow_s, result, cid = timed(17)
    say_checked(catalog, "slowed", cid, result, seconds=slow_s)
    wait_go("slowed")

    def executor_hosts() -> dict[str, str]:
        ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
        return {e.executor_id: ips.get(e.node_id, "") for e in ftbridge.executors()}

    # 2d. The head's own host (this driver, the catalog writer, Ray's head) cut off from every
    # executor for a moment shorter than Ray's detection bound, once during the spill job and
    # once during the read: nothing is declared dead, the work goes on where it stood.
    df = frame(spark, 19)
    reference = spark_to_arrow(df)
    before = executor_hosts()
    say("spilling-head-cut")
    ds = ftbridge.from_spark_recoverable(slowed(df, sleep_ms=1500, fast=0, per=25_000))
    returned_at = time.time()
    cid = ftbridge.conversion_id(ds)
    table, seconds = read_through(ds, "reading-head-cut")
    # The rest of that read may come from blocks already fetched to this host; the conversion
    # reopened is read by tasks on the worker hosts (the head has no CPU), started in the cut.
    reopened = read_all(ftbridge.open_recoverable(cid))
    read_done_at = time.time()
    result, again = check(reference, table), check(reference, reopened)
    say("head-cut", cid=cid, ok=result.ok and again.ok, result=f"{result}; reopened: {again}",
        checksum_ok=result.checksum_read == result.checksum_expected == again.checksum_read,
        returned_at=returned_at, read_done_at=read_done_at, executors_before=before,
        executors_after=executor_hosts(), **catalog_rows(catalog, cid))
    wait_go("head-cut")
    ftbridge.release(ds)

    # 2e. A worker host cut off while the spill job runs, healed only after Ray declared it dead:
    # its executor goes, the job finishes on the other host; the host comes back with its old disk
    # (files written before the cut). Reopened, nothing stale is read; release frees its files too.
    df = frame(spark, 23)
    reference = spark_to_arrow(df)
    say("spilling-partition")
    ds = ftbridge.from_spark_recoverable(slowed(df, sleep_ms=1500, fast=0, per=25_000))
    returned_at = time.time()
    cid = ftbridge.conversion_id(ds)
    result = check(reference, read_all(ds))
    say_checked(catalog, "spilled-partition", cid, result, returned_at=returned_at, executors=executor_hosts())
    wait_go("spilled-partition")  # the test heals the host and boots it again with its old disk
    session.wait_for_executors(2)
    again = check(reference, read_all(ftbridge.open_recoverable(cid)))
    freed = ftbridge.release(ds)
    say_checked(catalog, "released-partition", cid, again, freed=freed)
    wait_go("released-partition")

    # 3. A host partitioned from the head during a read, never healed.
    df = frame(spark, 7)
    reference = spark_to_arrow(df)
    ds = ftbridge.from_spark_recoverable(df)
    cid = ftbridge.conversion_id(ds)
    ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
    say("converted-partition", cid=cid, executors={e.executor_id: ips[e.node_id] for e in ftbridge.executors()},
        **catalog_rows(catalog, cid))
    wait_go("converted-partition")
    table, seconds = read_through(ds, "reading-partition")
    cut_at = time.time()
    result = check(reference, table)
    # Reopened: the cut-off host's files cannot be fetched; once Ray declares the host dead they
    # are rebuilt through Spark, which must not wait for the cut-off executor's cached blocks.
    started = time.monotonic()
    again = check(reference, read_all(ftbridge.open_recoverable(cid)))
    reopen_seconds = time.monotonic() - started
    watch = session.current().node_watch
    deadline = time.monotonic() + 60
    while not watch.removed and time.monotonic() < deadline:
        time.sleep(0.2)
    say("read-after-partition", cid=cid, ok=result.ok and again.ok, result=f"{result}; reopened: {again}",
        seconds=seconds, reopen_seconds=reopen_seconds, cut_at=cut_at,
        dead_at=watch.removed_at,
        checksum_ok=result.checksum_read == result.checksum_expected == again.checksum_read,
        removed=[{"executor": e, "host": ips.get(n)} for e, n in session.current().node_watch.removed],
        **catalog_rows(catalog, cid))

    # 4. Stop with cleanup: every reachable host frees its files; the cut-off host's wait for gc.
    logging.getLogger("ftbridge").setLevel(logging.DEBUG)
    started = time.monotonic()
    ftbridge.stop_spark(cleanup_data=True)
    print(f"stop_spark took {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    flush(Catalog(catalog))
    with Catalog(catalog).read() as con:
        released = [e["detail"] for e in queries.events(con) if e["kind"] == "released"]
        leftovers = queries.leftovers(con)
    say("stopped", released=released, leftovers=[{"path": f["path"], "host": f["host"], "reason": f["reason"]}
                                                 for f in leftovers])


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    main()
