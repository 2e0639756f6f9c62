"""Serving one partition inside a read task: load, check, fetch from its node, rebuild.

`read_group` is the body of the Datasource's read tasks (see `datasource.py`). A node-local
spill file on another node is loaded by a small task pinned to that node; a file that is
missing, corrupt or on a dead node is rebuilt through Spark (the rebuild service) and checked
against the recorded checksum; when nothing can rebuild it the read fails with a
`PartitionLostError` naming conversion, partition, node and cause.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace

import pyarrow as pa
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftbridge.convert.arrow_repair import well_formed
from ftbridge.convert.spill import SpillTarget, buffer_checksum
from ftbridge.errors import ConversionError, FtbridgeError, PartitionLostError
from ftbridge.retry import is_missing_file, remote_io_retry
from lineage.catalog import new_event
from lineage.writer import emit

log = logging.getLogger(__name__)

READ_TASKS_PER_NODE = int(os.environ.get("FTBRIDGE_READ_TASKS_PER_NODE", 2))
READ_MAX_RETRIES = int(os.environ.get("FTBRIDGE_READ_MAX_RETRIES", 5))
REBUILD_TIMEOUT_S = float(os.environ.get("FTBRIDGE_REBUILD_TIMEOUT_S", 600))
FETCH_TIMEOUT_S = float(os.environ.get("FTBRIDGE_FETCH_TIMEOUT_S", 120))


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
        table = well_formed(parse_ipc(buf))
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


@ray.remote(num_cpus=0, max_retries=0)
def fetch_partition(ref: PartitionRef):
    """`load_checked` on the node that holds a node-local spill file (pinned there)."""
    return load_checked(ref)


def _load(ref: PartitionRef, here: str) -> tuple[pa.Table | None, str | None, str]:
    """`load_checked` here, or on the file's node when it is node-local elsewhere."""
    if not (ref.target.node_local and ref.node_id and ref.node_id != here):
        return load_checked(ref)
    alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    if ref.node_id not in alive:
        return None, "spill_missing", f"{ref.path}: its node {ref.node_id} is gone"
    strategy = NodeAffinitySchedulingStrategy(ref.node_id, soft=False)
    try:
        return ray.get(fetch_partition.options(scheduling_strategy=strategy).remote(ref), timeout=FETCH_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        return None, "spill_missing", f"{ref.path}: node {ref.node_id} did not serve it within {FETCH_TIMEOUT_S:.0f}s"
    except ray.exceptions.RayError as exc:  # node died, worker crashed, task unschedulable
        return None, "spill_missing", f"{ref.path}: node {ref.node_id} could not serve it ({type(exc).__name__})"


def _serve(ref: PartitionRef, ctx: ReadContext, here: str, reads: list) -> pa.Table:
    """Read and check one partition's spill file; rebuild it through Spark if needed.

    Appends the read event to `reads`; the caller sends all of a task's read events at once.
    """
    started = time.time()
    table, problem, why = _load(ref, here)
    if problem is not None:
        log.warning("conversion %s partition %d: %s (%s)", ref.conversion_id, ref.partition_id, problem, why)
        emit(ctx.writer, "record_events", [event(ref, problem, started, why, node_id=here)])
        try:
            ref = _rebuild(ref, ctx, why)
        except FtbridgeError as exc:
            emit(ctx.writer, "update_partition", ref.conversion_id, ref.partition_id, {"state": "lost"},
                 [event(ref, "unrecoverable", started, str(exc), node_id=here)])
            raise
        table, problem, why = _load(ref, here)
        if problem is not None:
            raise PartitionLostError(conversion_id=ref.conversion_id, partition=ref.partition_id,
                                     node_id=ref.node_id, cause=f"rebuilt file unreadable: {why}")
    reads.append(event(ref, "read", started, ref.path, node_id=here))
    if ctx.schema is not None and not table.schema.equals(ctx.schema):
        # Spark labels timestamps with the session time zone and names list items `element`;
        # the Dataset's schema says UTC and `item`. Same buffers, so the cast is cheap.
        table = _cast(table, ctx.schema, ref)
    return table


def _cast(table: pa.Table, schema: pa.Schema, ref: PartitionRef) -> pa.Table:
    try:
        return table.cast(schema)
    except (pa.ArrowException, ValueError) as exc:
        raise ConversionError(
            f"partition {ref.partition_id} of conversion {ref.conversion_id}: its Arrow data ({table.schema}) "
            f"does not match the conversion's schema ({schema}): {exc}. Convert again with this ftbridge.",
            conversion_id=ref.conversion_id, partition=ref.partition_id, node_id=ref.node_id) from exc


def read_group(refs: tuple, ctx: ReadContext):
    """Body of one read task: yields each partition's table, in order.

    The read events of the whole group go to the catalog writer in one message at the end.
    """
    here = ray.get_runtime_context().get_node_id()
    reads: list = []
    for ref in refs:
        try:
            table = _serve(ref, ctx, here, reads)
        except FtbridgeError:
            raise
        except Exception as exc:  # an Arrow, OS or Ray error: name the partition, keep the cause
            raise ConversionError(
                f"reading partition {ref.partition_id} of conversion {ref.conversion_id} on node {here} failed: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:500] if str(exc) else ''}",
                conversion_id=ref.conversion_id, partition=ref.partition_id, node_id=here) from exc
        yield table
    emit(ctx.writer, "record_read", ctx.token, reads)  # one round trip per task, not per partition


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
