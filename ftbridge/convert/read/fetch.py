"""Loading a node-local file that another node holds, through a small task pinned to that node.

Used by the read tasks of Spark -> Ray conversions (`task.py`) and by Spark's Python workers
serving a Ray -> Spark conversion (`to_spark/reader.py`). The wait ends as soon as Ray
declares the node dead, or after FTBRIDGE_FETCH_TIMEOUT_S; either way the caller gets
(None, SPILL_MISSING, why) and rebuilds or restages as it would for a missing file.
"""

from __future__ import annotations

import pyarrow as pa
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftbridge.cluster.nodewatch import wait_pinned
from ftbridge.common.config import settings
from ftbridge.convert.partition import PartitionRef
from ftbridge.convert.read.files import load_checked
from ftbridge.lineage.kinds import EventKind

FETCH_POLL_S = 1.0  # how often a fetch from another node checks that the node is still alive


@ray.remote(num_cpus=0, max_retries=0)
def fetch_partition(ref: PartitionRef):
    """`load_checked` on the node that holds a node-local file (pinned there)."""
    return load_checked(ref)


def elsewhere(ref: PartitionRef, here: str | None) -> bool:
    """Whether `ref` is a node-local file recorded on a node other than `here`."""
    return bool(ref.target.node_local and ref.node_id and here and ref.node_id != here)


def load(ref: PartitionRef, here: str | None) -> tuple[pa.Table | None, EventKind | None, str]:
    """`load_checked` here, or on the file's node when it is node-local elsewhere."""
    if not elsewhere(ref, here):
        return load_checked(ref)
    return load_from_node(ref)


def load_from_node(ref: PartitionRef) -> tuple[pa.Table | None, EventKind | None, str]:
    """`load_checked` run on the node recorded for `ref` (which must be connected to Ray)."""
    alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    if ref.node_id is None or ref.node_id not in alive:
        return None, EventKind.SPILL_MISSING, f"{ref.path}: its node {ref.node_id} is gone"
    strategy = NodeAffinitySchedulingStrategy(ref.node_id, soft=False)
    timeout_s = settings().fetch_timeout_s
    task = fetch_partition.options(scheduling_strategy=strategy).remote(ref)
    _, died, timed_out = wait_pinned({task: ref.node_id}, timeout_s, FETCH_POLL_S)
    if died or timed_out:
        ray.cancel(task, force=True)
        why = "died while serving it" if died else f"did not serve it within {timeout_s:.0f}s"
        return None, EventKind.SPILL_MISSING, f"{ref.path}: node {ref.node_id} {why}"
    try:
        return ray.get(task)
    except ray.exceptions.RayError as exc:  # node died, worker crashed, task unschedulable
        return None, EventKind.SPILL_MISSING, f"{ref.path}: node {ref.node_id} could not serve it ({type(exc).__name__})"
