"""Scenarios with a long consumer, a second driver process, or a seeded stream of kills."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import threading
import time

import pyarrow as pa
import ray

import ftbridge
from ftbridge.chaos import faults
from ftbridge.chaos.proctable import spark_daemon_jvms, wait_gone
from ftbridge.chaos.scenarios import Outcome, block_node, convert_frame, frame, partitions_and_events, record_check
from ftbridge.cluster.session import wait_for_executors
from ftbridge.common.config import env_name
from ftbridge.convert.ops.rowcheck import CheckResult, read_all, spark_to_arrow


def long_consumer_node_killed(env, seed, out: Outcome):
    """Several epochs of iter_batches; a node dies in the middle of epoch 2."""

    rng = random.Random(seed)
    df, reference, ds = convert_frame(env, seed, "long-consumer")

    victim = rng.choice(block_node(env, ftbridge.conversion_id(ds)))
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


MAX_ROUNDS = 5  # rounds of executors_killed_at_random until a kill lands (each ~2-4 s; kills every 0.5-3 s)

DRIVER = textwrap.dedent("""
    import sys, time, ray, ftbridge
    ray.init(address=sys.argv[1], log_to_driver=False)
    spark = ftbridge.init_spark("chaos-driver", num_executors=1, executor_cores=1, executor_memory="512MB",
                                executor_resources={"chaos_node": 1})
    from ftbridge.chaos.long_scenarios import driver_frame
    ds = ftbridge.from_spark_recoverable(driver_frame(spark), catalog=sys.argv[2], name="driver-kill",
                                         recipe="ftbridge.chaos.long_scenarios:driver_frame")
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
    env_vars[env_name("warm_up")] = "false"  # it converts at once: a warm-up would only compete for the CPUs
    before = set(spark_daemon_jvms())
    err_path = os.path.join(env.workdir, f"driver-{seed}.stderr")
    err_file = open(err_path, "w")
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, ray.get_runtime_context().gcs_address, env.catalog],
                            env=env_vars, stdout=subprocess.PIPE, stderr=err_file, text=True)
    err_file.close()
    line, deadline = "", time.time() + 240
    while proc.stdout is not None and not line.startswith("CID") and time.time() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
    if not line.startswith("CID"):
        proc.kill()
        proc.wait(timeout=60)
        with open(err_path, errors="replace") as f:
            tail = "".join(ln for ln in f.readlines() if "WARN" not in ln)[-1500:]
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


def executors_killed_at_random(env, seed, out: Outcome):
    """A seeded ResourceKiller kills up to two executors at random times while data is converted and read.

    Rounds of convert + read go on (at most MAX_ROUNDS) until a kill has landed, so the scenario
    never passes on a schedule whose kills all fell after the work; each round is checked."""
    spark = env.ensure_spark()
    df = frame(spark, seed)
    reference = spark_to_arrow(df)
    killer = faults.ResourceKiller(lambda rng: faults.kill_executor(out.log, rng), seed=seed, max_kills=2,
                                   min_gap_s=0.5, max_gap_s=3.0)
    with killer:
        for round_ in range(MAX_ROUNDS):
            started = time.monotonic()
            ds = ftbridge.from_spark_recoverable(df, catalog=env.catalog, name=f"random-kills-{round_}")
            cid = ftbridge.conversion_id(ds)
            parts, _ = partitions_and_events(env, cid)
            faults.corrupt_spill(random.Random(seed).choice(parts)["path"], "delete", random.Random(seed), out.log)
            record_check(out, reference, read_all(ftbridge.open_recoverable(cid, catalog=env.catalog)), started)
            if killer.killed:
                break
    killer.require_kills(1)
    out.detail = f"{len(killer.killed)} kills in {round_ + 1} rounds, {len(killer.errors)} kill errors"
    wait_for_executors(2)


def to_spark_staging_lost(env, seed, out: Outcome):
    """Spark -> Ray -> Spark: two staged blocks deleted or corrupted, and an executor killed while
    Spark reads the DataFrame. Every row must come back once, unchanged, in the original order."""
    rng = random.Random(seed)
    spark = env.ensure_spark()
    df = frame(spark, seed)
    reference = spark_to_arrow(df)
    ds = ftbridge.from_spark_recoverable(df, catalog=env.catalog, name="to-spark-source")
    back = ftbridge.to_spark(ds, spark, catalog=env.catalog, name="to-spark")
    parts, _ = partitions_and_events(env, ftbridge.conversion_id(back))
    for part in rng.sample(parts, 2):
        faults.corrupt_spill(part["path"], rng.choice(["delete", "flip", "truncate"]), rng, out.log)
    started = time.monotonic()
    box: dict = {}
    reader = threading.Thread(target=lambda: box.setdefault("table", spark_to_arrow(back)), daemon=True)
    reader.start()
    faults.await_moment(lambda: bool(spark.sparkContext.statusTracker().getActiveStageIds()), 120,
                        "Spark's read of the DataFrame starting")
    faults.kill_executor(out.log, rng)
    faults.require_running(reader, "the executor was killed")
    reader.join(timeout=600)
    if "table" not in box:
        raise RuntimeError("Spark did not read the DataFrame within 600s")
    table = box["table"]
    record_check(out, reference, table, started)
    got, want = table.column("id").to_pylist(), reference.column("id").to_pylist()
    if got != want:  # the row check is order-blind; the order is part of what to_spark promises
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        out.checks.append(CheckResult(len(want), len(got), changed=[f"order differs from row {first}"]))
    wait_for_executors(2)
    ftbridge.release(back)


LONG_SCENARIOS = {
    "driver_killed_reopened": driver_killed_reopened,
    "long_consumer_node_killed": long_consumer_node_killed,
    "executors_killed_at_random": executors_killed_at_random,
    "to_spark_staging_lost": to_spark_staging_lost,
}
