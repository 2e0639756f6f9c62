"""The scenario matrix. Each scenario injects real faults and checks the data row by row."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field

import pyarrow as pa
import ray

import ftbridge
from chaos import faults
from chaos.proctable import spark_daemon_jvms, wait_gone
from ftbridge.cluster.session import wait_for_executors
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from lineage import queries
from lineage.catalog import Catalog
from lineage.writer import get_writer

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

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("scenario", "seed", "faults", "outcome", "rows_lost",
                                              "rows_duplicated", "rows_unexpected", "rows_changed",
                                              "recover_seconds", "detail")}


def frame(spark, seed: int):
    """The scenarios' DataFrame: ids and seeded content, PARTITIONS partitions."""
    return spark.range(0, ROWS, numPartitions=PARTITIONS).selectExpr(
        "id", f"(id * {seed % 97 + 3}) % 1009 as a", "sha1(cast(id as string)) as h")


def _convert(env, seed: int, name: str, **kw):

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


def record_check(out: Outcome, reference, table, started: float) -> None:
    """Check what was read against the reference, row by row, and add it to the outcome."""
    result = check(reference, table)
    out.checks.append(result)
    out.rows_lost += len(result.lost)
    out.rows_duplicated += len(result.duplicated)
    out.rows_unexpected += len(result.unexpected)
    out.rows_changed += len(result.changed)
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
    job = BackgroundConversion(df, env.catalog, "exec-kill-during")
    k = rng.randint(1, 3)
    faults.when(lambda: len(set(faults.spill_files(env.spill_root)) - before) >= k, 120)
    faults.kill_executor(out.log, rng)
    record_check(out, reference, read_all(job.result()), job.started)
    wait_for_executors(2)


def executor_killed_after_conversion(env, seed, out: Outcome):

    rng = random.Random(seed)
    df, reference, ds = _convert(env, seed, "exec-kill-after")
    cid = ftbridge.conversion_id(ds)
    faults.kill_executor(out.log, rng)
    parts, _ = partitions_and_events(env, cid)
    faults.corrupt_spill(rng.choice(parts)["path"], "delete", rng, out.log)
    started = time.monotonic()
    record_check(out, reference, read_all(ftbridge.open_recoverable(cid, catalog=env.catalog)), started)
    wait_for_executors(2)


def _block_node(env, cid):
    _, events = partitions_and_events(env, cid)
    worker_ids = {n.node_id for n in env.nodes}
    nodes = [e["node_id"] for e in events if e["kind"] == "read" and e["node_id"] in worker_ids]
    return nodes


def _node_lost(env, seed, out: Outcome, wipe: bool, name: str):

    rng = random.Random(seed)
    df, reference, ds = _convert(env, seed, name)
    cid = ftbridge.conversion_id(ds)
    victim = rng.choice(_block_node(env, cid))
    faults.remove_node(env.cluster, env.node(victim), out.log, wipe_spill=wipe, spill_root=env.spill_root)
    env.remove(env.node(victim)) if any(n.node_id == victim for n in env.nodes) else None
    started = time.monotonic()
    record_check(out, reference, read_all(ds), started)
    wait_for_executors(2)


def node_blocks_lost(env, seed, out):
    _node_lost(env, seed, out, wipe=False, name="node-blocks")


def node_blocks_and_spill_lost(env, seed, out):
    _node_lost(env, seed, out, wipe=True, name="node-blocks-spill")


def spark_stopped_then_blocks_lost(env, seed, out: Outcome):

    rng = random.Random(seed)
    df, reference, ds = _convert(env, seed, "stopped-then-lost")
    victim = rng.choice(_block_node(env, ftbridge.conversion_id(ds)))
    ftbridge.stop_spark(cleanup_data=False)
    out.log.add("spark_stopped", "session")
    faults.remove_node(env.cluster, env.node(victim), out.log, wipe_spill=False)
    env.remove(env.node(victim)) if any(n.node_id == victim for n in env.nodes) else None
    started = time.monotonic()
    record_check(out, reference, read_all(ds), started)


def spill_corrupted(env, seed, out: Outcome):

    rng = random.Random(seed)
    df, reference, ds = _convert(env, seed, "spill-corrupt")
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
    job = BackgroundConversion(df, env.catalog, "writer-kill")
    time.sleep(rng.uniform(0.2, 1.5))
    faults.kill_catalog_writer(writer, out.log)
    ds = job.result()
    parts, events = partitions_and_events(env, ftbridge.conversion_id(ds))
    if len(parts) != PARTITIONS or not any(e["kind"] == "created" for e in events):
        raise AssertionError(f"catalog lost records: {len(parts)} partitions, {len(events)} events")
    record_check(out, reference, read_all(ds), job.started)


def two_faults_back_to_back(env, seed, out: Outcome):

    rng = random.Random(seed)
    df, reference, ds = _convert(env, seed, "two-faults")
    cid = ftbridge.conversion_id(ds)
    victim = rng.choice(_block_node(env, cid))
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


def long_consumer_node_killed(env, seed, out: Outcome):
    """Several epochs of iter_batches; a node dies in the middle of epoch 2."""

    rng = random.Random(seed)
    df, reference, ds = _convert(env, seed, "long-consumer")

    victim = rng.choice(_block_node(env, ftbridge.conversion_id(ds)))
    started = time.monotonic()
    epochs = []
    for epoch in range(3):
        tables = []
        for i, batch in enumerate(ds.iter_batches(batch_size=2048, batch_format="pyarrow")):
            tables.append(pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch)
            if epoch == 1 and i == 3:
                faults.remove_node(env.cluster, env.node(victim), out.log, wipe_spill=True,
                                   spill_root=env.spill_root)
                env.remove(env.node(victim)) if any(n.node_id == victim for n in env.nodes) else None
        epochs.append(pa.concat_tables(tables))
    for table in epochs:
        record_check(out, reference, table, started)
    out.detail = f"{len(epochs)} epochs, identical row sets: {all(c.ok for c in out.checks)}"


DRIVER = textwrap.dedent("""
    import sys, time, ray, ftbridge
    ray.init(address=sys.argv[1], log_to_driver=False)
    spark = ftbridge.init_spark("chaos-driver", num_executors=1, executor_cores=1, executor_memory="512MB",
                                executor_resources={"chaos_node": 1})
    from chaos.scenarios import driver_frame
    ds = ftbridge.from_spark_recoverable(driver_frame(spark), catalog=sys.argv[2], name="driver-kill",
                                         recipe="chaos.scenarios:driver_frame")
    print("CID", ftbridge.conversion_id(ds), flush=True)
    while True:                                    # training, until SIGKILL
        for batch in ds.iter_batches(batch_size=1000):
            time.sleep(0.01)
""")


def driver_frame(spark):
    return frame(spark, 7)


def driver_killed_reopened(env, seed, out: Outcome):


    rng = random.Random(seed)
    ftbridge.stop_spark(cleanup_data=False)  # the subprocess driver takes the executor slots
    env_vars = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    before = set(spark_daemon_jvms())
    err_path = os.path.join(env.workdir, f"driver-{seed}.stderr")
    err_file = open(err_path, "w")
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, ray.get_runtime_context().gcs_address, env.catalog],
                            env=env_vars, stdout=subprocess.PIPE, stderr=err_file, text=True)
    err_file.close()
    line, deadline = "", time.time() + 240
    while not line.startswith("CID") and time.time() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
    if not line.startswith("CID"):
        proc.kill()
        proc.wait(timeout=60)
        with open(err_path, errors="replace") as f:
            tail = "".join(l for l in f.readlines() if "WARN" not in l)[-1500:]
        raise RuntimeError(f"the driver did not start its conversion (exit {proc.returncode}): {tail}")
    cid = line.split()[1]
    time.sleep(rng.uniform(0.5, 3))
    proc.kill()
    proc.wait(timeout=60)
    jvms = set(spark_daemon_jvms()) - before
    out.log.add("driver_killed", f"pid {proc.pid}", conversion_id=cid)
    left = wait_gone(jvms, timeout_s=60)
    if left:
        raise AssertionError(f"the killed driver's JVMs outlived it: {sorted(left)}")
    parts, _ = partitions_and_events(env, cid)
    faults.corrupt_spill(rng.choice(parts)["path"], "delete", rng, out.log)
    spark = env.ensure_spark()
    reference = spark_to_arrow(driver_frame(spark))
    started = time.monotonic()
    record_check(out, reference, read_all(ftbridge.open_recoverable(cid, catalog=env.catalog)), started)


SCENARIOS = {
    "executor_killed_during_conversion": executor_killed_during_conversion,
    "executor_killed_after_conversion": executor_killed_after_conversion,
    "node_blocks_lost": node_blocks_lost,
    "node_blocks_and_spill_lost": node_blocks_and_spill_lost,
    "spark_stopped_then_blocks_lost": spark_stopped_then_blocks_lost,
    "driver_killed_reopened": driver_killed_reopened,
    "spill_corrupted": spill_corrupted,
    "catalog_writer_killed": catalog_writer_killed,
    "two_faults_back_to_back": two_faults_back_to_back,
    "executor_paused_past_heartbeat": executor_paused_past_heartbeat,
    "long_consumer_node_killed": long_consumer_node_killed,
}


def executors_killed_at_random(env, seed, out: Outcome):
    """A seeded ResourceKiller kills up to two executors at random times while data is converted and read."""

    spark = env.ensure_spark()
    df = frame(spark, seed)
    reference = spark_to_arrow(df)
    killer = faults.ResourceKiller(lambda rng: faults.kill_executor(out.log, rng), seed=seed, max_kills=2,
                                   min_gap_s=0.5, max_gap_s=3.0)
    started = time.monotonic()
    with killer:
        ds = ftbridge.from_spark_recoverable(df, catalog=env.catalog, name="random-kills")
        cid = ftbridge.conversion_id(ds)
        parts, _ = partitions_and_events(env, cid)
        faults.corrupt_spill(random.Random(seed).choice(parts)["path"], "delete", random.Random(seed), out.log)
        table = read_all(ftbridge.open_recoverable(cid, catalog=env.catalog))
    record_check(out, reference, table, started)
    out.detail = f"{len(killer.killed)} kills, {len(killer.errors)} kill errors"
    wait_for_executors(2)


SCENARIOS["executors_killed_at_random"] = executors_killed_at_random
