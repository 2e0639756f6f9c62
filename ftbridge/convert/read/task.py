"""Serving one partition inside a read task: load, check, fetch from its node, rebuild.

`read_group` is the body of the Datasource's read tasks (see `datasource.py`). A node-local
spill file on another node is loaded by a small task pinned to that node (`fetch.py`); a file that is
missing, corrupt or on a dead node is rebuilt through Spark (the rebuild service) and checked
against the recorded checksum; when nothing can rebuild it the read fails with a
`PartitionLostError` naming conversion, partition, node and cause.
"""

from __future__ import annotations

import logging
import os
import time

import pyarrow as pa
import ray
import ray.data
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftbridge.adapters import ray as ray_adapter
from ftbridge.common import foreign
from ftbridge.common.config import settings
from ftbridge.common.errors import FtbridgeError, PartitionLostError
from ftbridge.convert.partition import PartitionRef, ReadContext, event, runs
from ftbridge.convert.read import fetch
from ftbridge.convert.rebuild.service import request_rebuild
from ftbridge.lineage.kinds import EventKind, PartitionState
from ftbridge.lineage.rows import PartitionUpdate

log = logging.getLogger(__name__)
def _serve(ref: PartitionRef, ctx: ReadContext, here: str, reads: list) -> pa.Table:
    """Read and check one partition's spill file; rebuild it through Spark if needed.

    Appends the read event to `reads`; the caller sends all of a task's read events at once.
    """
    started = time.time()
    table, problem, why = fetch.load(ref, here)
    for _ in range(2):  # a file rebuilt earlier (streaming passes read the original paths) may be lost too
        if problem is None:
            break
        ref, reused = _rebuild(ref, ctx, here, started, problem, why)
        table, problem, why = fetch.load(ref, here)
        if problem is not None and not reused:
            break
    if problem is not None or table is None:
        raise PartitionLostError(conversion_id=ref.conversion_id, partition=ref.partition_id,
                                 node_id=ref.node_id, cause=f"rebuilt file unreadable: {why}")
    reads.append(event(ref, EventKind.READ, started, ref.path, node_id=here))
    if ctx.schema is not None and not table.schema.equals(ctx.schema):
        # Spark labels timestamps with the session time zone and names list items `element`;
        # the Dataset's schema says UTC and `item`. Same buffers, so the cast is cheap.
        table = _cast(table, ctx.schema, ref)
    return table


def _rebuild(ref: PartitionRef, ctx: ReadContext, here: str, started: float, problem: EventKind,
             why: str) -> tuple[PartitionRef, bool]:
    """Ask for `ref` to be rebuilt; record the loss unless the answer is a file rebuilt earlier."""
    detected = event(ref, problem, started, why, node_id=here)
    try:
        new_ref, reused = request_rebuild(ref, ctx, why)
    except FtbridgeError as exc:
        ctx.writer.record_events([detected])
        ctx.writer.update_partition(ref.conversion_id, ref.partition_id, PartitionUpdate(state=PartitionState.LOST),
             [event(ref, EventKind.UNRECOVERABLE, started, str(exc), node_id=here)])
        raise
    if not reused:
        log.warning("conversion %s partition %d: %s (%s)", ref.conversion_id, ref.partition_id, problem, why)
        ctx.writer.record_events([detected])
    return new_ref, reused


def _cast(table: pa.Table, schema: pa.Schema, ref: PartitionRef) -> pa.Table:
    try:
        return table.cast(schema)
    except (pa.ArrowException, ValueError) as exc:
        raise foreign.schema_mismatch(exc, ref.conversion_id, ref.partition_id, ref.node_id, table.schema,
                                      schema) from exc


def blocks_of(tables, max_bytes: int | None):
    """`tables` (in order) as blocks of whole record batches of about `max_bytes` (Ray Data's
    target block size; None: no limit, one block per task): small
    partitions are joined (a block costs Ray Data a few milliseconds, so 10,000 tiny partitions
    must not become 10,000 blocks) and large ones split (so Ray Data's backpressure can pause a
    streaming read between blocks). No copy: the batches stay views of the checked files."""
    group: list = []
    size, schema = 0, None
    for table in tables:
        for batch in table.to_batches():
            full = max_bytes is not None and size + batch.nbytes > max_bytes
            if group and (full or not batch.schema.equals(schema)):
                yield pa.Table.from_batches(group, schema=schema)
                group, size = [], 0
            if not group:
                schema = batch.schema
            group.append(batch)
            size += batch.nbytes
        if schema is None:
            schema = table.schema
    if group:
        yield pa.Table.from_batches(group, schema=schema)
    elif schema is not None:  # every partition of this task is empty: one empty block keeps the schema
        yield schema.empty_table()


def _served(refs: tuple, ctx: ReadContext, here: str, reads: list):
    for ref in refs:
        try:
            yield _serve(ref, ctx, here, reads)
        except FtbridgeError:
            raise
        except Exception as exc:  # an Arrow, OS or Ray error: name the partition, keep the cause
            raise foreign.partition_read_failed(exc, ref.conversion_id, ref.partition_id, here) from exc


def serve_one(ref: PartitionRef, ctx: ReadContext) -> pa.Table:
    """One partition, checked (rebuilt if it must be), outside a Ray Data read task: what the
    resumable training iterator reads. Its read event goes to the catalog writer at once."""
    here = ray.get_runtime_context().get_node_id()
    reads: list = []
    table = next(_served((ref,), ctx, here, reads))
    ctx.writer.record_read(ctx.token, reads)
    return table


def read_group(refs: tuple, ctx: ReadContext):
    """Body of one read task: its partitions' rows, in order, in blocks of Ray Data's target size.

    The read events of the whole group go to the catalog writer in one message at the end.
    """
    here = ray.get_runtime_context().get_node_id()
    reads: list = []
    yield from blocks_of(_served(refs, ctx, here, reads), ctx.block_bytes)
    ctx.writer.record_read(ctx.token, reads)  # one round trip per task, not per partition


def sliced(table: pa.Table, pieces: int) -> list[pa.Table]:
    """`table` as `pieces` runs of about equal rows (views, no copy); at least one."""
    return [table.slice(a, b - a) for a, b in runs(table.num_rows, pieces)]


@ray.remote(num_cpus=0)
def read_blocks(refs: tuple, ctx: ReadContext, pieces: tuple):
    """Body of one read task of a materialized Dataset (`dataset.py`), run on the node that holds
    its partitions' files: each partition's rows as `pieces[i]` blocks, in order, then the blocks'
    Ray Data metadata (one list, last). The read events go to the catalog writer in one message."""
    here = ray.get_runtime_context().get_node_id()
    reads: list = []
    blocks = [b for table, k in zip(_served(refs, ctx, here, reads), pieces, strict=True) for b in sliced(table, k)]
    ctx.writer.record_read(ctx.token, reads)
    return (*blocks, [ray_adapter.block_metadata_of(b) for b in blocks])


@ray.remote(num_cpus=0)
def prewarm() -> int:
    """Start a read worker early (it imports this module, so Ray Data too: its read tasks run
    `read_group`), while Spark still spills."""
    return os.getpid()


def prewarm_readers(per_node: int | None = None) -> list:
    """Fire `per_node` no-op tasks on each alive node so the reads find warm workers.

    A cold Ray worker takes ~0.5-1 s to start; the spill job takes longer than that, so the
    workers are ready (and idle) when the reads arrive.
    """
    per_node = settings().read_tasks_per_node if per_node is None else per_node
    refs = []
    for node in ray.nodes():
        if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0:
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)
            refs += [prewarm.options(scheduling_strategy=strategy).remote() for _ in range(per_node)]
    return refs
