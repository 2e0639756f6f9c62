"""The Spark side of a Ray -> Spark conversion: one staged block per Spark partition, in order.

`make_reader` builds the `mapInArrow` function. It runs in Spark's Python workers, which are
not part of the Ray job: the normal path only memory-maps the staged file, checks its bytes
against the recorded checksum and hands the batches to the JVM. Spark places these tasks
without knowing where the files are, so a node-local file staged on another host is fetched
from that host's node (joining Ray only then) - a fault-free conversion records no recovery.
Importing this module imports Ray (for that fetch: about 0.4 s, once per Python worker).
A file that is missing, corrupt or on a node that cannot serve it is staged again by the
conversion's Restager, so a retried Spark task gets the same bytes back.
"""

from __future__ import annotations

import pyarrow as pa

from ftbridge.adapters import ray as ray_adapter
from ftbridge.common import foreign
from ftbridge.common.config import RAY_NAMESPACE, executor_node_id, settings
from ftbridge.common.errors import PartitionLostError
from ftbridge.convert.partition import PartitionRef
from ftbridge.convert.read import fetch
from ftbridge.convert.read.files import load_checked
from ftbridge.convert.spill.target import SpillTarget


def make_reader(conversion_id: str, partitions: list[dict], target: SpillTarget, expected: pa.Schema,
                gcs_address: str, restager: str):
    """The function for `spark.range(n, numPartitions=n).mapInArrow(...)`: id i -> block i's batches."""
    rows = {p["partition_id"]: p for p in partitions}

    def read(id_batches):
        for batch in id_batches:
            for index in batch.column(0).to_pylist():
                yield from _serve(conversion_id, rows[index], target, expected, gcs_address, restager)

    return read


def _serve(conversion_id: str, row: dict, target: SpillTarget, expected: pa.Schema, gcs_address: str,
           restager: str):
    ref = PartitionRef.of(conversion_id, row, target)
    table, problem, why = load_checked(ref)
    here = None
    if problem is not None:
        here = _this_node(ref, gcs_address)
        if ref.target.node_local and ref.node_id and here and ref.node_id != here:
            table, problem, why = _fetch(ref, gcs_address)
    if problem is not None:
        row = _restage(ref, why, gcs_address, restager, here)
        ref = PartitionRef.of(conversion_id, row, target)
        table, problem, why = load_checked(ref)
        if problem is not None:
            raise PartitionLostError(conversion_id=conversion_id, partition=ref.partition_id, node_id=ref.node_id,
                                     cause=f"staged again, still unreadable: {why}")
    if table is None:
        raise PartitionLostError(conversion_id=conversion_id, partition=ref.partition_id, node_id=ref.node_id,
                                 cause=f"unreadable: {why}")
    if not table.schema.equals(expected):
        try:
            table = table.cast(expected)
        except (pa.ArrowException, ValueError) as exc:
            raise foreign.schema_mismatch(exc, conversion_id, ref.partition_id, ref.node_id, table.schema,
                                          expected) from exc
    yield from table.to_batches()


def _this_node(ref: PartitionRef, gcs_address: str) -> str | None:
    """This executor's Ray node: the one ftbridge gave it, else (a session ftbridge did not
    start) the Ray node on this host, when node-local files make it matter."""
    node = executor_node_id()
    if node is None and ref.target.node_local:
        node = ray_adapter.this_host_node(gcs_address, RAY_NAMESPACE)
    return node


def _fetch(ref: PartitionRef, gcs_address: str):
    """The file from the node that staged it (another host: Spark does not know where it is);
    (None, kind, why) if that node cannot serve it, and the block is staged again here."""
    ray_adapter.join_cluster(gcs_address, RAY_NAMESPACE)
    return fetch.load_from_node(ref)


def _restage(ref: PartitionRef, why: str, gcs_address: str, restager: str, here: str | None) -> dict:
    timeout_s = settings().rebuild_timeout_s
    try:
        return ray_adapter.call_named_actor(gcs_address, RAY_NAMESPACE, restager, "restage",
                                            (ref.conversion_id, ref.partition_id, here, why, ref.path), timeout_s)
    except Exception as exc:  # no Restager (released, driver gone), timeout, or its error
        raise foreign.rebuild_wait_failed(exc, ref.conversion_id, ref.partition_id, ref.node_id, why,
                                          timeout_s) from exc
