"""The spill job: one bounded Spark job that writes every partition (or just one, to rebuild it)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import ray

from ftbridge.adapters import spark as spark_adapter
from ftbridge.cluster.jobs import new_group, run_bounded
from ftbridge.common import foreign
from ftbridge.common.config import settings
from ftbridge.common.errors import ConversionError, FtbridgeError
from ftbridge.convert.spill.batches import ArrowBatches, spill_metadata
from ftbridge.convert.spill.target import SpillTarget, delete_conversion_dirs, ray_nodes_by_address
from ftbridge.lineage.kinds import EventKind
from ftbridge.lineage.rows import EventRow, new_event

log = logging.getLogger(__name__)

STRAGGLER_SWEEPS_S = (2.0, 10.0, 30.0)


def spill_all(batches: ArrowBatches, target: SpillTarget, conversion_id: str,
              on_written: Callable[[list[dict]], None] | None = None) -> tuple[list[dict], list[EventRow]]:
    """Write every partition; return their metadata rows in partition order, and a
    `spill_retried` event for each task attempt Spark ran again (an executor lost, a task
    that failed and was retried), for the catalog.

    `on_written(partitions)` is called in this thread with the metadata rows of partitions whose
    files are written and checked: with the JVM writer as their tasks end (while the job writes
    the rest; with [] each time it waited for one in vain), with the Python writer once, when
    the job has ended. An exception it raises ends the job.

    On failure the persisted batches are dropped and a ConversionError names the partition
    and Spark's root cause; nothing has been recorded yet.
    """
    rdd = batches.spill_rdd(target, conversion_id)
    group = new_group()
    started = time.time()
    streamed = batches.streamed_job is not None and on_written is not None
    if streamed:
        job_class, hand_over = batches.streamed_job, on_written

        def run():
            return _streamed(spark_adapter.StreamedJob(job_class, rdd), batches.num_partitions, target, hand_over)
    else:
        run = rdd.collect
    try:
        rows = run_bounded(rdd.context, settings().spark_job_timeout_s, f"spill job of conversion {conversion_id}",
                           run, group=group, conversion_id=conversion_id)
    except Exception as exc:
        batches.unpersist()
        delete_conversion_dirs(target, conversion_id)  # partitions already written: unrecorded, so removed
        # A Python writer whose task Spark already cancelled can still finish and rename its file:
        # sweep the unrecorded folders again once such stragglers are done.
        for delay_s in STRAGGLER_SWEEPS_S:
            sweep = threading.Timer(delay_s, delete_conversion_dirs, (target, conversion_id))
            sweep.daemon = True
            sweep.start()
        if isinstance(exc, FtbridgeError):
            raise
        raise foreign.spark_job_failed(spark_adapter.error_text(exc), conversion_id) from exc
    partitions = sorted(map(spill_metadata, rows), key=lambda p: p["partition_id"])
    ids = [p["partition_id"] for p in partitions]
    if ids != list(range(batches.num_partitions)):
        raise ConversionError(f"spill job returned partitions {ids[:20]}, expected 0..{batches.num_partitions - 1}",
                              conversion_id=conversion_id)
    if not streamed:
        place_on_ray_nodes(partitions, target)
        if on_written is not None:
            on_written(partitions)
    return partitions, retried_events(rdd.context, group, conversion_id, started)


TAKE_WAIT_S = 0.2  # one wait of the driver for the next finished partition (the job's end is seen sooner)


def _streamed(job: spark_adapter.StreamedJob, expected: int, target: SpillTarget,
              on_written: Callable[[list[dict]], None]) -> list[dict]:
    """Run `job`, handing each set of finished partitions to `on_written` (placed on their Ray
    nodes first); the metadata rows of all of them once the job has ended."""
    rows: list[dict] = []
    try:
        while len(rows) < expected:
            ended = job.completed()  # before the take: once ended, every row is already queued
            got = job.take(0.0 if ended else TAKE_WAIT_S)
            written = [spill_metadata(row) for row in got]
            place_on_ray_nodes(written, target)
            rows += written
            on_written(written)  # [] while it waits
            if ended and not got:
                break  # failed or cancelled: its error comes from result()
        job.result()
    except BaseException:
        job.cancel()
        raise
    return rows


def place_on_ray_nodes(partitions: list[dict], target: SpillTarget) -> None:
    """Node-local files written where ftbridge set no Ray node id (an executor of a session it
    did not start, e.g. a Spark cluster that hosts Ray) are recorded on the Ray node at the
    address of the executor that wrote them, when that address has exactly one; reads then
    fetch them from there, and releases delete them there. A host with no Ray node up (Ray on
    Spark starts one lost with its executor again) is waited for, up to `host_node_wait_s`."""
    unplaced = [p for p in partitions if target.node_local and p.get("node_id") is None and p.get("host")]
    if not unplaced:
        return
    deadline = time.monotonic() + settings().host_node_wait_s
    said = False
    while True:
        nodes = ray.nodes()
        by_address = ray_nodes_by_address(nodes)
        for p in unplaced:
            p["node_id"] = by_address.get(p["host"])
        crowded = {n.get("NodeManagerAddress") for n in nodes if n.get("Alive")} - set(by_address)
        waiting = sorted({p["host"] for p in unplaced if p["node_id"] is None} - crowded)
        if not waiting or time.monotonic() >= deadline:
            break
        if not said:
            log.info("spill files written on %s: no Ray node is up there yet, waiting up to %.0fs for one",
                     ", ".join(waiting), settings().host_node_wait_s)
            said = True
        time.sleep(0.5)
    left = sorted({p["host"] for p in unplaced if p["node_id"] is None})
    if left:
        log.info("spill files written on %s are recorded without a Ray node (no single Ray node has that "
                 "address); reads on other hosts will ask Spark to rebuild them", ", ".join(left))


def retried_events(sc, group: str, conversion_id: str, started: float) -> list[EventRow]:
    """A `spill_retried` event per failed task attempt of the spill job's group (partition set
    for the spill stage's own tasks, whose index is the partition; None for the plan's stages)."""
    events = []
    for a in spark_adapter.failed_task_attempts(sc, group):
        what = f"stage {a['stage']} attempt {a['stage_attempt']}: "
        if a["index"] is None:
            what += a["reason"]
        else:
            on = f" on executor {a['executor']} ({a['host']})" if a["executor"] else ""
            what += f"task {a['index']} failed{on}: {a['reason']}; Spark ran it again"
        events.append(new_event(conversion_id, a["index"] if a["final_stage"] else None, EventKind.SPILL_RETRIED,
                                started, source="spark", detail=what))
    if events:
        log.info("conversion %s: Spark ran %d task attempt(s) of the spill job again", conversion_id, len(events))
    return events


def spill_one(batches: ArrowBatches, target: SpillTarget, conversion_id: str, partition_id: int) -> dict:
    """Write exactly one partition again (from Spark's cached copy, else its lineage)."""
    rdd = batches.spill_rdd(target, conversion_id, only_partition=partition_id)
    rows = run_bounded(rdd.context, settings().rebuild_job_timeout_s,
                       f"rebuild of partition {partition_id} of {conversion_id}",
                       lambda: rdd.context.runJob(rdd, list, partitions=[partition_id]),
                       conversion_id=conversion_id, partition=partition_id)
    if len(rows) != 1:
        raise ConversionError(f"rebuild of partition {partition_id} returned {len(rows)} results",
                              conversion_id=conversion_id, partition=partition_id)
    meta = spill_metadata(rows[0])
    place_on_ray_nodes([meta], target)
    return meta
