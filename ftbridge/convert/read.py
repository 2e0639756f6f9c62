"""Ray read tasks over spill files, and the Dataset built from their outputs.

Blocks are *task returns*, so when a node dies with blocks in its object store, Ray's
lineage reconstruction re-runs `read_partition` for exactly those blocks. Read tasks ask
for no CPU: Spark executor actors may hold every CPU, and a read that waits for a CPU
held by an executor that waits for the read would deadlock (seen with from_arrow_refs).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace

import pyarrow as pa
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftbridge.convert.spill import SpillTarget, buffer_checksum
from ftbridge.errors import FtbridgeError, PartitionLostError
from ftbridge.retry import is_missing_file, remote_io_retry
from lineage.catalog import new_event
from lineage.writer import emit

log = logging.getLogger(__name__)

READ_TASKS_PER_NODE = int(os.environ.get("FTBRIDGE_READ_TASKS_PER_NODE", 2))
READ_MAX_RETRIES = int(os.environ.get("FTBRIDGE_READ_MAX_RETRIES", 5))
REBUILD_TIMEOUT_S = float(os.environ.get("FTBRIDGE_REBUILD_TIMEOUT_S", 600))


@dataclass(frozen=True)
class PartitionRef:
    """Everything a read task needs to serve, check and rebuild one partition."""

    conversion_id: str
    partition_id: int
    path: str
    node_id: str | None
    num_rows: int
    num_bytes: int
    checksum: str
    target: SpillTarget


@dataclass(frozen=True)
class ReadContext:
    """Shared by all read tasks of one Dataset build."""

    token: str                      # unique per Dataset build: tells a re-read from a first read
    writer: object                  # CatalogWriter actor handle
    rebuild_service: str | None     # named RebuildService actor, or None when nothing can rebuild
    schema: pa.Schema | None = None  # the Dataset's schema; files in Spark's own labels are cast to it


def event(ref: PartitionRef, kind: str, started: float, detail: str = "", node_id: str | None = None,
          source: str = "read_task") -> dict:
    return new_event(ref.conversion_id, ref.partition_id, kind, started, node_id or ref.node_id, source, detail)


def _fetch_remote(fs, path: str) -> pa.Buffer:
    """The whole file from a remote store, retried on transient network errors."""
    def fetch():
        with fs.open_input_stream(path) as stream:
            return stream.read_buffer()

    return remote_io_retry(fetch)


def load_checked(ref: PartitionRef) -> tuple[pa.Table | None, str | None, str]:
    """(table, None, '') when the file is intact; (None, kind, why) when missing or corrupt.

    Local files are memory-mapped; remote ones are fetched once (with bounded retries for
    transient network errors) and parsed from memory.
    """
    fs, _ = ref.target.filesystem()
    try:
        if ref.target.is_local:
            buf = pa.memory_map(ref.path, "r").read_buffer()
        else:
            buf = _fetch_remote(fs, ref.path)
        size, checksum = buf.size, buffer_checksum(buf, ref.checksum)
    except FileNotFoundError:
        return None, "spill_missing", f"{ref.path} does not exist"
    except (OSError, pa.ArrowException) as exc:
        if is_missing_file(exc):
            return None, "spill_missing", f"{ref.path}: {exc}"
        return None, "spill_missing", f"{ref.path} could not be read: {exc}"
    if size != ref.num_bytes or checksum != ref.checksum:
        return None, "checksum_mismatch", (f"{ref.path}: {size} bytes, checksum {checksum}; catalog says "
                                           f"{ref.num_bytes} bytes, {ref.checksum}")
    try:
        table = parse_ipc(buf)
    except (OSError, pa.ArrowException) as exc:
        return None, "checksum_mismatch", f"{ref.path} is not a readable Arrow IPC file: {exc}"
    if table.num_rows != ref.num_rows:
        return None, "checksum_mismatch", f"{ref.path} has {table.num_rows} rows; catalog says {ref.num_rows}"
    return table, None, ""


def parse_ipc(buf: pa.Buffer) -> pa.Table:
    """A spill file's table, zero-copy over the buffer: an IPC stream (what ftbridge writes),
    or an IPC file (what ftbridge before the `arrow-ipc-stream/1` format wrote)."""
    if buf.size >= 6 and buf[:6].to_pybytes() == b"ARROW1":
        return pa.ipc.open_file(buf).read_all()
    return pa.ipc.open_stream(buf).read_all()


def _rebuild(ref: PartitionRef, ctx: ReadContext, why: str) -> PartitionRef:
    here = ray.get_runtime_context().get_node_id()
    if ctx.rebuild_service is None:
        raise PartitionLostError(conversion_id=ref.conversion_id, partition=ref.partition_id, node_id=ref.node_id,
                                 cause=f"{why}; no Spark session or recipe is registered to rebuild it")
    try:
        service = ray.get_actor(ctx.rebuild_service, namespace="ftbridge")
        meta = ray.get(service.request.remote(ref.conversion_id, ref.partition_id, why), timeout=REBUILD_TIMEOUT_S)
    except FtbridgeError:
        raise
    except ValueError as exc:  # get_actor: the service is gone (Spark stopped, driver died)
        raise PartitionLostError(conversion_id=ref.conversion_id, partition=ref.partition_id, node_id=ref.node_id,
                                 cause=f"{why}; the Spark session that could rebuild it has stopped") from exc
    except ray.exceptions.GetTimeoutError as exc:
        raise PartitionLostError(conversion_id=ref.conversion_id, partition=ref.partition_id, node_id=ref.node_id,
                                 cause=f"{why}; the rebuild did not finish within {REBUILD_TIMEOUT_S:.0f}s") from exc
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(getattr(exc, "cause", None), FtbridgeError) else None
        if cause is not None:
            raise cause from exc
        raise PartitionLostError(conversion_id=ref.conversion_id, partition=ref.partition_id, node_id=ref.node_id,
                                 cause=f"{why}; rebuild failed: {exc}") from exc
    except ray.exceptions.RayActorError as exc:
        raise PartitionLostError(conversion_id=ref.conversion_id, partition=ref.partition_id, node_id=ref.node_id,
                                 cause=f"{why}; the rebuild service died (driver gone?)") from exc
    log.info("partition %d of %s rebuilt on node %s (asked from %s)", ref.partition_id, ref.conversion_id,
             meta.get("node_id"), here)
    return replace(ref, path=meta["path"], node_id=meta.get("node_id"), num_bytes=meta["num_bytes"],
                   checksum=meta["checksum"], num_rows=meta["num_rows"])


def _serve(ref: PartitionRef, ctx: ReadContext, here: str, reads: list) -> pa.Table:
    """Read and check one partition's spill file; rebuild it through Spark if needed.

    Appends the read event to `reads`; the caller sends all of a task's read events at once.
    """
    started = time.time()
    table, problem, why = load_checked(ref)
    if problem is not None:
        log.warning("conversion %s partition %d: %s (%s)", ref.conversion_id, ref.partition_id, problem, why)
        emit(ctx.writer, "record_events", [event(ref, problem, started, why, node_id=here)])
        try:
            ref = _rebuild(ref, ctx, why)
        except FtbridgeError as exc:
            emit(ctx.writer, "update_partition", ref.conversion_id, ref.partition_id, {"state": "lost"},
                 [event(ref, "unrecoverable", started, str(exc), node_id=here)])
            raise
        table, problem, why = load_checked(ref)
        if problem is not None:
            raise PartitionLostError(conversion_id=ref.conversion_id, partition=ref.partition_id,
                                     node_id=ref.node_id, cause=f"rebuilt file unreadable: {why}")
    reads.append(event(ref, "read", started, ref.path, node_id=here))
    if ctx.schema is not None and not table.schema.equals(ctx.schema):
        # Spark labels timestamps with the session time zone; the Dataset's schema says UTC.
        # Same buffers, so the cast is cheap.
        table = table.cast(ctx.schema)
    return table


@ray.remote(num_cpus=0, max_retries=READ_MAX_RETRIES)
def read_partitions(refs: tuple, ctx: ReadContext):
    """Serve a group of partitions of one node; returns table_0, size_0, table_1, size_1, ...

    Each table is its own task return, so Ray reconstructs a lost block by re-running this
    task. Sizes are (rows, bytes): the driver builds Ray Data's block metadata from them, so
    read workers never import ray.data.
    """
    here = ray.get_runtime_context().get_node_id()
    out, reads = [], []
    for ref in refs:
        table = _serve(ref, ctx, here, reads)
        out += [table, (table.num_rows, table.nbytes)]
    emit(ctx.writer, "record_read", ctx.token, reads)  # one round trip per task, not per partition
    return tuple(out)


@ray.remote(num_cpus=0)
def prewarm() -> int:
    """Start a read worker early (it imports this module), while Spark still spills."""
    return os.getpid()


def prewarm_readers(per_node: int = READ_TASKS_PER_NODE) -> list:
    """Fire `per_node` no-op tasks on each alive node so the reads find warm workers.

    A cold Ray worker takes ~0.5-1 s to start; the spill job takes longer than that, so the
    workers are ready (and idle) when the reads arrive.
    """
    refs = []
    for node in ray.nodes():
        if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0:
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)
            refs += [prewarm.options(scheduling_strategy=strategy).remote() for _ in range(per_node)]
    return refs


def _groups(refs: list[PartitionRef], alive_nodes: set[str]) -> list[tuple[str | None, list]]:
    """Partitions grouped by the node holding their file, a few tasks per node.

    One task per partition would start one Ray worker process per partition (all at once:
    read tasks ask for no CPU), and a cold worker costs about a second here. A handful of
    tasks per node reuse the idle workers Ray keeps per CPU.
    """
    per_node: dict = {}
    for ref in refs:
        node = ref.node_id if ref.target.node_local and ref.node_id in alive_nodes else None
        per_node.setdefault(node, []).append(ref)
    groups = []
    fixed = int(os.environ.get("FTBRIDGE_READ_GROUP", 0))
    for node, items in per_node.items():
        # Reading a checked spill file takes milliseconds; two tasks per node keep both warm
        # workers busy (see prewarm_readers) without cold-starting more.
        size = fixed or max(1, -(-len(items) // READ_TASKS_PER_NODE))
        groups += [(node, items[i:i + size]) for i in range(0, len(items), size)]
    return groups


def submit_reads(refs: list[PartitionRef], ctx: ReadContext, alive_nodes: set[str]) -> dict:
    """Submit grouped read tasks; returns partition_id -> (block ref, size ref)."""
    out = {}
    for node, group in _groups(refs, alive_nodes):
        opts = {"num_returns": 2 * len(group)}
        if node is not None:
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        returned = read_partitions.options(**opts).remote(tuple(group), ctx)
        for i, ref in enumerate(group):
            out[ref.partition_id] = (returned[2 * i], returned[2 * i + 1])
    return out


def build_dataset(block_refs: list, sizes: list, schema: pa.Schema):
    """A MaterializedDataset over task-returned blocks, without Ray Data's metadata tasks.

    Args:
        block_refs: refs of the read tasks' Arrow tables.
        sizes: (rows, bytes) of each block, as the read tasks reported them.
        schema: the conversion's Arrow schema.
    """
    from ray.data._internal.logical.interfaces import LogicalPlan
    from ray.data._internal.logical.operators.from_operators import FromArrow
    from ray.data._internal.stats import DatasetStats
    from ray.data.block import BlockMetadata, BlockMetadataWithSchema
    from ray.data.context import DataContext
    from ray.data.dataset import MaterializedDataset

    if not block_refs:  # an empty DataFrame: an empty Dataset that still knows its schema
        empty = pa.Table.from_batches([], schema=schema)
        block_refs, metadata = [ray.put(empty)], [BlockMetadataWithSchema.from_block(empty)]
    else:
        metadata = [BlockMetadataWithSchema.from_metadata(
            BlockMetadata(num_rows=rows, size_bytes=nbytes, input_files=None, exec_stats=None), schema=schema)
            for rows, nbytes in sizes]
    stats = DatasetStats(metadata={"FromArrow": metadata}, parent=None)
    context = DataContext.get_current().copy()
    return MaterializedDataset(LogicalPlan(FromArrow(block_refs, metadata), context), context, stats)
