"""The Dataset over a conversion's spill files: a public Ray Data Datasource, read in order."""

from __future__ import annotations

import threading
import uuid

import pyarrow as pa
import ray
import ray.data

from ftbridge.adapters import ray as ray_adapter
from ftbridge.common import foreign
from ftbridge.common.config import settings
from ftbridge.convert.partition import PartitionRef, ReadContext
from ftbridge.convert.read.datasource import SpillDatasource
from ftbridge.convert.spill.target import SpillTarget
from ftbridge.lineage.writer import CatalogClient


def open_dataset(conversion_id: str, partitions: list[dict], target: SpillTarget, schema: pa.Schema,
                 writer: CatalogClient, service_name: str | None, materialize: bool = True):
    """The Dataset over `partitions`.

    Args:
        service_name: the rebuild service that read tasks ask when a file is missing or bad.
        materialize: True: read every partition into Ray's object store before returning (blocks
            stay pinned while the Dataset lives; a lost block is rebuilt by Ray's lineage). False:
            a lazy, streaming Dataset; each pass (epoch) reads the spill files again, and the
            object store holds only the blocks in flight.
    """
    refs = [PartitionRef.of(conversion_id, p, target) for p in partitions]
    ctx = ReadContext(uuid.uuid4().hex if materialize else "", writer.in_background(), service_name, schema,
                      ray_adapter.target_block_bytes())
    if not refs:  # no partitions at all: an empty Dataset that still knows its schema
        return ray.data.from_arrow(pa.Table.from_batches([], schema=schema))
    cfg = settings()
    alive = sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0)
    # Materialized: a few tasks per node (a cold read worker costs more than a read). Streaming:
    # one task per partition, the same few at a time, so Ray Data's backpressure can hold the
    # blocks in flight to a window (a task's blocks are made whether or not anyone waits).
    per_pass = cfg.read_tasks_per_node * max(1, alive)
    source = SpillDatasource(refs, ctx, num_tasks=per_pass if materialize else len(refs))
    with ray_adapter.data_context(preserve_order=True):
        # No CPU (see datasource.py); retries re-run a read whose worker or node died.
        ds = ray_adapter.read_datasource(source, source.num_tasks(), cfg.read_max_retries,
                                         concurrency=min(per_pass, source.num_tasks()))
    if materialize:
        ds = _materialize(ds, conversion_id, cfg.read_timeout_s)
        writer.flush()  # the read events of this build are durable when we return
    return ds


def _materialize(ds, conversion_id: str, timeout_s: float):
    """`ds.materialize()`, bounded, with ftbridge errors instead of Ray's."""
    box: dict = {}

    def run():
        try:
            with ray_adapter.quiet_execution(ds):
                box["ds"] = ds.materialize()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"ftbridge-read-{conversion_id[:8]}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise foreign.read_timed_out(conversion_id, timeout_s)
    if "error" in box:
        raise foreign.read_failed(box["error"], conversion_id) from None
    return box["ds"]
