"""The Dataset over a conversion's spill files, in partition order.

A materialized Dataset is read by ftbridge's own tasks, each on the node that holds its
partitions' files (node-local files are read where they are, not fetched), and built from their
blocks; a streaming one (and a materialized one of many small partitions, whose blocks the
Datasource joins) through the public Ray Data Datasource of `datasource.py`.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pyarrow as pa
import ray
import ray.data
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftbridge.adapters import ray as ray_adapter
from ftbridge.common import foreign
from ftbridge.common.config import settings
from ftbridge.convert.partition import PartitionRef, ReadContext, runs
from ftbridge.convert.read.datasource import SpillDatasource
from ftbridge.convert.read.task import read_blocks
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
    ctx = _context(writer, service_name, schema, materialize)
    if not refs:  # no partitions at all: an empty Dataset that still knows its schema
        return ray.data.from_arrow(pa.Table.from_batches([], schema=schema))
    cfg = settings()
    if materialize and pinned_suits(refs):
        reads = PinnedReads(conversion_id, ctx, cfg, target)
        reads.submit(refs)
        ds = reads.dataset()
        writer.flush_soon()  # journaled (durable) already; committed while the caller goes on
        return ds
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
        writer.flush_soon()  # journaled (durable) already; committed while the caller goes on
    return ds


def reads_during_spill(conversion_id: str, num_partitions: int, target: SpillTarget, schema: pa.Schema,
                       writer: CatalogClient, service_name: str | None, materialize: bool) -> PinnedReads | None:
    """The reads of a conversion's materialized Dataset, submitted while its spill job runs, as
    each partition's file is written (`PinnedReads.written`); None when the Dataset is opened
    once the job has ended (`open_dataset`): a streaming Dataset, no partitions, or more than
    PINNED_MAX_SMALL_PARTITIONS of them (whose sizes decide how they are read)."""
    if not materialize or not 0 < num_partitions <= PINNED_MAX_SMALL_PARTITIONS:
        return None
    return PinnedReads(conversion_id, _context(writer, service_name, schema, True), settings(), target)


def _context(writer: CatalogClient, service_name: str | None, schema: pa.Schema, materialize: bool) -> ReadContext:
    """The read tasks' context of one Dataset build (a materialized one's token tells re-reads)."""
    return ReadContext(uuid.uuid4().hex if materialize else "", writer.in_background(), service_name, schema,
                       ray_adapter.target_block_bytes())


PINNED_MAX_SMALL_PARTITIONS = 64  # above it, partitions under SMALL_PARTITION_BYTES are joined by the Datasource
SMALL_PARTITION_BYTES = 1 << 20


def pinned_suits(refs: list[PartitionRef]) -> bool:
    """Whether a materialized Dataset over `refs` is read by pinned tasks: one block or more per
    partition, so not for thousands of tiny partitions (a block costs Ray Data a few ms each
    time the Dataset is iterated; the Datasource joins small partitions into blocks)."""
    return len(refs) <= PINNED_MAX_SMALL_PARTITIONS or sum(r.num_bytes for r in refs) >= SMALL_PARTITION_BYTES * len(refs)


def pinned_groups(refs: list[PartitionRef], per_node: int,
                  nodes: list[dict] | None = None) -> list[tuple[str | None, tuple[PartitionRef, ...]]]:
    """(node, partitions) per read task: node-local files on live nodes with their node; the rest
    (shared storage, files of dead or unknown nodes) spread over the live nodes with CPUs. Each
    node's partitions (in partition order) are cut into `per_node` contiguous runs. `nodes`:
    `ray.nodes()`, when the caller has it."""
    nodes = [n for n in (ray.nodes() if nodes is None else nodes) if n.get("Alive")]
    alive = {n["NodeID"] for n in nodes}
    spread = sorted(n["NodeID"] for n in nodes if n.get("Resources", {}).get("CPU", 0) > 0) or [None]
    by_node: dict[str | None, list[PartitionRef]] = {}
    rest = 0
    for ref in refs:
        node = ref.node_id if ref.target.node_local and ref.node_id in alive else None
        if node is None:
            node, rest = spread[rest % len(spread)], rest + 1
        by_node.setdefault(node, []).append(ref)
    groups = []
    for node, mine in by_node.items():
        groups += [(node, tuple(mine[a:b])) for a, b in runs(len(mine), per_node)]
    return groups


class PinnedReads:
    """Partitions read by tasks on their files' nodes (soft: a dead node's partitions are read
    elsewhere and rebuilt), submitted as they become readable (`submit`, any number of times),
    the blocks kept in Ray's object store; `dataset()` waits for all of them and makes one
    MaterializedDataset in partition order. A lost block is made again by Ray's lineage: its
    task runs again."""

    def __init__(self, conversion_id: str, ctx: ReadContext, cfg, target: SpillTarget) -> None:
        self.conversion_id, self.ctx, self.cfg, self.target = conversion_id, ctx, cfg, target
        self.submitted: list[tuple[tuple[PartitionRef, ...], tuple[int, ...], Any]] = []  # (partitions, pieces, refs)
        self._nodes: list[dict] | None = None  # Ray's nodes, asked once per Dataset (placement is soft)

    def written(self, partitions: list[dict]) -> None:
        """Read these partitions (the spill job's metadata rows of files it has written)."""
        if partitions:
            self.submit([PartitionRef.of(self.conversion_id, p, self.target) for p in partitions])

    def submit(self, refs: list[PartitionRef]) -> None:
        block_bytes = self.ctx.block_bytes
        if self._nodes is None:
            self._nodes = ray.nodes()
        for node, group in pinned_groups(refs, self.cfg.read_tasks_per_node, self._nodes):
            pieces = tuple(len(runs(r.num_rows, -(-r.num_bytes // block_bytes) if block_bytes else 1)) for r in group)
            strategy = NodeAffinitySchedulingStrategy(node, soft=True) if node else "DEFAULT"
            out: Any = read_blocks.options(num_returns=sum(pieces) + 1, max_retries=self.cfg.read_max_retries,
                                           scheduling_strategy=strategy).remote(group, self.ctx, pieces)
            self.submitted.append((group, pieces, out))

    def read_so_far(self) -> int:
        """How many submitted partitions are read already (their tasks have returned)."""
        metadata_refs = [out[-1] for _, _, out in self.submitted]
        ready, _ = ray.wait(metadata_refs, num_returns=len(metadata_refs), timeout=0) if metadata_refs else ([], [])
        done = set(ready)
        return sum(len(group) for group, _, out in self.submitted if out[-1] in done)

    def cancel(self) -> None:
        for _, _, out in self.submitted:
            ray.cancel(out[0], recursive=True)

    def dataset(self):
        cfg, conversion_id = self.cfg, self.conversion_id
        metadata_refs = [out[-1] for _, _, out in self.submitted]
        ready, _ = ray.wait(metadata_refs, num_returns=len(metadata_refs), timeout=cfg.read_timeout_s)
        if len(ready) < len(metadata_refs):
            self.cancel()
            raise foreign.read_timed_out(conversion_id, cfg.read_timeout_s)
        try:
            metadata = ray.get(metadata_refs)
        except Exception as exc:  # a RayTaskError around ftbridge's own error, or Ray's
            raise foreign.read_failed(exc, conversion_id) from None
        per_partition: dict[int, list[tuple]] = {}
        for (group, pieces, out), metas in zip(self.submitted, metadata, strict=True):
            at = 0
            for ref, k in zip(group, pieces, strict=True):
                per_partition[ref.partition_id] = list(zip(out[at:at + k], metas[at:at + k], strict=True))
                at += k
        ordered = [pair for pid in sorted(per_partition) for pair in per_partition[pid]]
        with ray_adapter.data_context(preserve_order=True):
            return ray_adapter.materialized_from_blocks([b for b, _ in ordered], [m for _, m in ordered])


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
