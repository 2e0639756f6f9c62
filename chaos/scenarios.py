"""The scenario matrix. Each scenario injects real faults and checks the data row by row."""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field

import ftbridge
from ftbridge.chaos import faults
from ftbridge.chaos.drivers import OtherDriver
from ftbridge.chaos.faults import FaultLog
from ftbridge.cluster.session import wait_for_executors
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.writer import flush, get_writer, start_writer

ROWS = 60_000
PARTITIONS = 8


@dataclass
class Outcome:
    """What a scenario did and what the consumer got; `outcome` is set by the runner."""

    scenario: str
    seed: int
    faults: list = field(default_factory=list)
    outcome: str = ""
    rows_lost: int = 0
    rows_duplicated: int = 0
    rows_unexpected: int = 0
    rows_changed: int = 0
    recover_seconds: float = 0.0
    detail: str = ""
    checks: list = field(default_factory=list)
    log: FaultLog = field(default_factory=FaultLog)  # the runner gives each run a fresh one
    wall_seconds: float = 0.0                        # set by the runner

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("scenario", "seed", "faults", "outcome", "rows_lost",
                                              "rows_duplicated", "rows_unexpected", "rows_changed",
                                              "recover_seconds", "detail")}


def frame(spark, seed: int):
    """The scenarios' DataFrame: ids and seeded content, PARTITIONS partitions."""
    return spark.range(0, ROWS, numPartitions=PARTITIONS).selectExpr(
        "id", f"(id * {seed % 97 + 3}) % 1009 as a", "sha1(cast(id as string)) as h")


def slowed(df, sleep_ms: int = 1500, fast: int = 2, per: int = ROWS // PARTITIONS):
    """`df` (ids from 0, `per` rows a partition) with the first row of each partition after the
    first `fast` ones sleeping `sleep_ms` in its executor (a filter that keeps every row): the spill
    job writes its first files at once and lasts a few seconds more, so a fault can land while it
    runs. Same rows as `df`."""
    return df.where(f"if(id % {per} = 0 and id >= {fast * per}, "
                    f"reflect('java.lang.Thread', 'sleep', cast({sleep_ms} as bigint)), 'x') is not null")


def convert_frame(env, seed: int, name: str, **kw):
    """The scenarios' frame for `seed`, its fault-free reference table, and its recoverable Dataset."""
    spark = env.ensure_spark()
    df = frame(spark, seed)
    reference = spark_to_arrow(df)
    ds = ftbridge.from_spark_recoverable(df, catalog=env.catalog, name=name, **kw)
    return df, reference, ds


class BackgroundConversion:
    """`from_spark_recoverable` in a thread, so a fault can land while it runs; `result()` joins.

    An error in the conversion is raised by `result()`, not hidden behind a missing value.
    """

    def __init__(self, df, catalog: str, name: str) -> None:
        self.box: dict = {}

        def run():
            try:
                self.box["ds"] = ftbridge.from_spark_recoverable(df, catalog=catalog, name=name)
            except BaseException as exc:
                self.box["error"] = exc

        self.started = time.monotonic()
        self.thread = threading.Thread(target=run, name=f"convert-{name}", daemon=True)
        self.thread.start()

    def result(self, timeout_s: float = 600):
        self.thread.join(timeout=timeout_s)
        if self.thread.is_alive():
            raise TimeoutError(f"the conversion did not finish within {timeout_s:.0f}s")
        if "error" in self.box:
            raise self.box["error"]
        return self.box["ds"]


def add_check(out: Outcome, result) -> None:
    """Add one row-by-row check result to the outcome's checks and row counts."""
    out.checks.append(result)
    out.rows_lost += len(result.lost)
    out.rows_duplicated += len(result.duplicated)
    out.rows_unexpected += len(result.unexpected)
    out.rows_changed += len(result.changed)


def record_check(out: Outcome, reference, table, started: float) -> None:
    """Check what was read against the reference, row by row, and add it to the outcome."""
    add_check(out, check(reference, table))
    out.recover_seconds = round(out.recover_seconds + time.monotonic() - started, 3)


def partitions_and_events(env, cid):
    """A conversion's partitions and events as the catalog has them now."""
    with Catalog(env.catalog).read() as con:
        return queries.partitions(con, cid), queries.events(con, cid)


def executor_killed_during_conversion(env, seed, out: Outcome):
    rng = random.Random(seed)
    spark = env.ensure_spark()
    df = frame(spark, seed)
    reference = spark_to_arrow(df)
    before = set(faults.spill_files(env.spill_root))
    # The first 3 partitions spill at once, each later one sleeps 1.5 s first: once k <= 3 files
    # exist, both executors (one slot each) are busy with a spill task for a while yet.
    job = BackgroundConversion(slowed(df, fast=3), env.catalog, "exec-kill-during")
    k = rng.randint(1, 3)

    def written() -> int:
        return len(set(faults.spill_files(env.spill_root)) - before)

    faults.await_moment(lambda: written() >= k, 120, f"{k} of the conversion's spill files being written")
    if written() >= PARTITIONS:
        raise faults.FaultMissedError("every spill file was written before the executor could be killed")
    victim = faults.kill_executor(out.log, rng)
    faults.require_running(job.thread, "the executor was killed")
    ds = job.result()
    record_check(out, reference, read_all(ds), job.started)
    _check_spill_retry_recorded(env, ftbridge.conversion_id(ds), victim.detail["executor_id"])
    wait_for_executors(2)


def _check_spill_retry_recorded(env, cid: str, executor_id: str | None) -> None:
    """The spill task the killed executor was running (one slot each, fewer than the 8 files
    written and the rest slowed, so it was running one) is in the catalog as Spark's retry."""
    _, events = partitions_and_events(env, cid)
    retried = [e for e in events if e["kind"] == "spill_retried"]
    if not any(f"on executor {executor_id} " in e["detail"] and e["partition_id"] is not None for e in retried):
        raise AssertionError(f"the catalog does not record that Spark ran the killed executor {executor_id}'s "
                             f"spill task again: spill_retried events {[e['detail'] for e in retried]}")


def executor_killed_after_conversion(env, seed, out: Outcome):
    rng = random.Random(seed)
    df, reference, ds = convert_frame(env, seed, "exec-kill-after")
    cid = ftbridge.conversion_id(ds)
    faults.kill_executor(out.log, rng)
    parts, _ = partitions_and_events(env, cid)
    faults.corrupt_spill(rng.choice(parts)["path"], "delete", rng, out.log)
    started = time.monotonic()
    record_check(out, reference, read_all(ftbridge.open_recoverable(cid, catalog=env.catalog)), started)
    wait_for_executors(2)


def block_node(env, cid):
    """A worker node that holds blocks of the conversion (from its read events)."""
    _, events = partitions_and_events(env, cid)
    worker_ids = {n.node_id for n in env.nodes}
    nodes = [e["node_id"] for e in events if e["kind"] == "read" and e["node_id"] in worker_ids]
    return nodes


def _node_lost(env, seed, out: Outcome, wipe: bool, name: str):
    """A worker node holding blocks (and spill files) of a conversion is removed, its disk wiped
    when `wipe`. Every row comes back, and the catalog says how: each lost block reconstructed,
    each lost file rebuilt by Spark once, on another node."""
    rng = random.Random(seed)
    df, reference, ds = convert_frame(env, seed, name)
    cid = ftbridge.conversion_id(ds)
    flush(Catalog(env.catalog))  # read events are buffered for up to 0.5 s
    parts, _ = partitions_and_events(env, cid)
    with_files = {p["node_id"] for p in parts}
    candidates = [n for n in block_node(env, cid) if n in with_files or not wipe]
    if not candidates:
        raise faults.FaultMissedError(f"no worker node holds both blocks and spill files of {cid}")
    victim = rng.choice(sorted(set(candidates)))
    _, events = partitions_and_events(env, cid)
    lost_blocks = sorted({e["partition_id"] for e in events if e["kind"] == "read" and e["node_id"] == victim})
    lost_files = sorted(p["partition_id"] for p in parts if p["node_id"] == victim)
    faults.remove_node(env.cluster, env.node(victim), out.log, wipe_spill=wipe, spill_root=env.spill_root)
    env.remove(env.node(victim)) if any(n.node_id == victim for n in env.nodes) else None
    started = time.monotonic()
    record_check(out, reference, read_all(ds), started)
    flush(Catalog(env.catalog))
    _check_node_loss_recorded(env, cid, victim, lost_blocks, lost_files if wipe else [])
    wait_for_executors(2)


def _check_node_loss_recorded(env, cid, victim: str, lost_blocks: list[int], lost_files: list[int]) -> None:
    parts, events = partitions_and_events(env, cid)
    kinds = {(e["kind"], e["partition_id"]) for e in events}
    after = {p["partition_id"]: p for p in parts}
    missing = [f"object_reconstructed {pid}" for pid in lost_blocks if ("object_reconstructed", pid) not in kinds]
    for pid in set(lost_blocks) & set(lost_files):
        missing += [f"{kind} {pid}" for kind in ("spill_missing", "rebuilt_from_spark") if (kind, pid) not in kinds]
        if after[pid]["node_id"] == victim or after[pid]["rebuilt_count"] != 1:
            missing.append(f"partition {pid} rebuilt once elsewhere (node {after[pid]['node_id'][:8]}, "
                           f"rebuilt {after[pid]['rebuilt_count']}x)")
    if missing:
        raise AssertionError(f"the catalog does not record the node loss: missing {missing}")


def node_blocks_lost(env, seed, out):
    _node_lost(env, seed, out, wipe=False, name="node-blocks")


def node_blocks_and_spill_lost(env, seed, out):
    _node_lost(env, seed, out, wipe=True, name="node-blocks-spill")


def spark_stopped_then_blocks_lost(env, seed, out: Outcome):
    """Spark stops (`cleanup_data=False`), then a node holding blocks of the Dataset is removed:
    the lost blocks are re-read from their spill files, which nothing can rebuild now. The files
    are on a durable spill root: node-local files on the removed node would be gone with it
    (a clean PartitionLostError, see docs/limits.md), whichever node the seed picks."""
    rng = random.Random(seed)
    df, reference, ds = convert_frame(env, seed, "stopped-then-lost",
                                      spill_dir=os.path.join(env.workdir, "durable-spill"))
    victim = rng.choice(block_node(env, ftbridge.conversion_id(ds)))
    ftbridge.stop_spark(cleanup_data=False)
    out.log.add("spark_stopped", "session")
    faults.remove_node(env.cluster, env.node(victim), out.log, wipe_spill=False)
    env.remove(env.node(victim)) if any(n.node_id == victim for n in env.nodes) else None
    started = time.monotonic()
    record_check(out, reference, read_all(ds), started)


def spill_corrupted(env, seed, out: Outcome):
    rng = random.Random(seed)
    df, reference, ds = convert_frame(env, seed, "spill-corrupt")
    cid = ftbridge.conversion_id(ds)
    parts, _ = partitions_and_events(env, cid)
    for part in rng.sample(parts, 2):
        faults.corrupt_spill(part["path"], rng.choice(["delete", "truncate", "flip"]), rng, out.log)
    started = time.monotonic()
    record_check(out, reference, read_all(ftbridge.open_recoverable(cid, catalog=env.catalog)), started)


def catalog_writer_killed(env, seed, out: Outcome):
    rng = random.Random(seed)
    spark = env.ensure_spark()
    df = frame(spark, seed)
    reference = spark_to_arrow(df)
    writer = get_writer(Catalog(env.catalog))
    before = set(faults.spill_files(env.spill_root))
    job = BackgroundConversion(df, env.catalog, "writer-kill")
    k = rng.randint(1, 4)  # the spill job is under way; the conversion is recorded after it
    faults.await_moment(lambda: len(set(faults.spill_files(env.spill_root)) - before) >= k, 120,
                        f"{k} of the conversion's spill files being written")
    faults.kill_catalog_writer(writer, out.log)
    faults.require_running(job.thread, "the catalog writer was killed")
    ds = job.result()
    parts, events = partitions_and_events(env, ftbridge.conversion_id(ds))
    if len(parts) != PARTITIONS or not any(e["kind"] == "created" for e in events):
        raise AssertionError(f"catalog lost records: {len(parts)} partitions, {len(events)} events")
    record_check(out, reference, read_all(ds), job.started)


def writer_creator_exits(env, seed, out: Outcome):
    """Another driver starts the catalog's writer; it exits (even seeds) or is SIGKILLed (odd seeds)
    while this driver converts, then this driver reads: the writer it started serves this driver
    throughout, and the catalog holds every record and read event of this driver."""
    spark = env.ensure_spark()
    df = frame(spark, seed)
    reference = spark_to_arrow(df)
    catalog = os.path.join(env.workdir, f"shared-{seed}-{time.monotonic_ns()}.duckdb")
    other = OtherDriver(env.cluster.address, catalog)
    writer = start_writer(Catalog(catalog))  # joins the other driver's writer
    if writer.pid() != other.writer_pid:
        raise AssertionError("this driver did not join the other driver's catalog writer")
    before = set(faults.spill_files(env.spill_root))
    job = BackgroundConversion(slowed(df), catalog, "creator-exits")  # still spilling when the creator ends
    faults.await_moment(lambda: len(set(faults.spill_files(env.spill_root)) - before) >= 1, 120,
                        "the conversion's first spill file being written")
    other.end("sigkill" if seed % 2 else "exit", out.log)
    faults.require_running(job.thread, "the writer's creator ended")
    ds = job.result()
    started = time.monotonic()
    record_check(out, reference, read_all(ds), started)
    record_check(out, reference, read_all(ftbridge.open_recoverable(ftbridge.conversion_id(ds), catalog=catalog)),
                 started)
    if writer.pid() != other.writer_pid:
        raise AssertionError("the catalog writer ended with the driver that started it")
    flush(Catalog(catalog))
    with Catalog(catalog).read() as con:
        parts = queries.partitions(con, ftbridge.conversion_id(ds))
        events = queries.events(con, ftbridge.conversion_id(ds))
    read = {e["partition_id"] for e in events if e["kind"] == "read"}
    if len(parts) != PARTITIONS or not any(e["kind"] == "created" for e in events) or read != set(range(PARTITIONS)):
        raise AssertionError(f"the catalog lost records: {len(parts)} partitions, partitions read {sorted(read)}, "
                             f"events {sorted({e['kind'] for e in events})}")
    out.detail = f"{len(events)} events of this driver recorded by the writer the other driver started"
    ftbridge.release(ds)


def two_faults_back_to_back(env, seed, out: Outcome):
    rng = random.Random(seed)
    df, reference, ds = convert_frame(env, seed, "two-faults")
    cid = ftbridge.conversion_id(ds)
    victim = rng.choice(block_node(env, cid))
    faults.kill_executor(out.log, rng)
    faults.remove_node(env.cluster, env.node(victim), out.log, wipe_spill=True, spill_root=env.spill_root)
    env.remove(env.node(victim)) if any(n.node_id == victim for n in env.nodes) else None
    started = time.monotonic()
    record_check(out, reference, read_all(ds), started)
    wait_for_executors(2)


def executor_paused_past_heartbeat(env, seed, out: Outcome):
    rng = random.Random(seed)
    spark = env.ensure_spark()
    df = frame(spark, seed)
    reference = spark_to_arrow(df)
    pause = threading.Thread(target=lambda: faults.pause_executor(out.log, rng, seconds=20))
    pause.start()
    started = time.monotonic()
    ds = ftbridge.from_spark_recoverable(df, catalog=env.catalog, name="paused")
    pause.join(timeout=120)
    record_check(out, reference, read_all(ds), started)


SCENARIOS = {
    "executor_killed_during_conversion": executor_killed_during_conversion,
    "executor_killed_after_conversion": executor_killed_after_conversion,
    "node_blocks_lost": node_blocks_lost,
    "node_blocks_and_spill_lost": node_blocks_and_spill_lost,
    "spark_stopped_then_blocks_lost": spark_stopped_then_blocks_lost,
    "spill_corrupted": spill_corrupted,
    "catalog_writer_killed": catalog_writer_killed,
    "writer_creator_exits": writer_creator_exits,
    "two_faults_back_to_back": two_faults_back_to_back,
    "executor_paused_past_heartbeat": executor_paused_past_heartbeat,
}
