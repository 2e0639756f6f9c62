"""Staging: each block of a Dataset written as an Arrow IPC stream file by a Ray task.

The files have the spill files' format and checksum (`spill/write.py`), so `verify`, `gc` and
`release` treat them alike. Staging tasks ask for no CPU, for the read tasks' reason: Spark
executors may hold every CPU. Node-local files are staged on the executors' nodes (a node with
no executor, such as a head that holds the blocks, is where Spark never reads).
"""

from __future__ import annotations

import pyarrow as pa
import ray
from ray.data.block import BlockAccessor
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftbridge.adapters import ray as ray_adapter
from ftbridge.common import foreign
from ftbridge.common.config import settings
from ftbridge.common.errors import ConversionTimeoutError
from ftbridge.convert.spill.target import SpillTarget
from ftbridge.convert.spill.write import write_messages


@ray.remote(num_cpus=0, max_retries=3)
def stage_block(block, target: SpillTarget, conversion_id: str, index: int) -> tuple[dict, pa.Schema]:
    """Write one block (Arrow or pandas) as partition `index`; return its metadata row and schema."""
    table = BlockAccessor.for_block(block).to_arrow()
    node_id = ray.get_runtime_context().get_node_id()
    meta = write_messages(target, conversion_id, index, node_id, table.schema.serialize().to_pybytes(),
                          (batch.serialize() for batch in table.to_batches()))
    return meta, table.schema


def placement(block_refs: list, nodes: list[str]) -> list[str | None]:
    """The node each block is staged on: one of `nodes` (Spark's executors) that already holds
    the block if there is one, else the one with the fewest blocks so far; None (Ray's choice)
    when there are no such nodes."""
    if not nodes:
        return [None] * len(block_refs)
    load = dict.fromkeys(nodes, 0)
    out: list[str | None] = []
    for holders in ray_adapter.object_nodes(block_refs):
        local = [n for n in nodes if n in holders]
        node = min(local or nodes, key=load.__getitem__)
        load[node] += 1
        out.append(node)
    return out


def stage_all(block_refs: list, target: SpillTarget, conversion_id: str,
              nodes: list[str] | None = None) -> tuple[list[dict], list[pa.Schema]]:
    """Stage every block, bounded by FTBRIDGE_TO_SPARK_TIMEOUT_S; metadata rows in block order.

    With `nodes` (the executors' nodes, for node-local staging) each file lands on a node where
    Spark reads; the pin is soft, so a node that died meanwhile does not fail the staging.
    """
    timeout_s = settings().to_spark_timeout_s
    tasks = [stage_block.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True) if node
                                 else "DEFAULT").remote(ref, target, conversion_id, i)
             for i, (ref, node) in enumerate(zip(block_refs, placement(block_refs, nodes or [])))]
    ready, pending = ray.wait(tasks, num_returns=len(tasks), timeout=timeout_s)
    if pending:
        for task in pending:
            ray.cancel(task, force=True)
        raise ConversionTimeoutError(
            f"to_spark: {len(pending)} of {len(tasks)} blocks were not staged within {timeout_s:.0f}s under "
            f"{target.display_root}. Check `ray status`, or raise FTBRIDGE_TO_SPARK_TIMEOUT_S.", conversion_id=conversion_id)
    try:
        results = ray.get(tasks)
    except Exception as exc:  # a staging task failed after its retries
        raise foreign.read_failed(exc, conversion_id) from None
    return [meta for meta, _ in results], [schema for _, schema in results]
