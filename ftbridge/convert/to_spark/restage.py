"""Staging a block again from its Ray object, when Spark finds its file missing, corrupt or elsewhere.

A named `Restager` actor per Ray -> Spark conversion holds the Dataset's block references (so
the blocks stay in Ray's object store, or can be reconstructed by Ray, while the DataFrame
lives). Spark's Python workers call it by name; it stages the block on the asking node, checks
the bytes against the recorded checksum and records what happened.
"""

from __future__ import annotations

import threading
import time

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftbridge.convert.partition import PartitionRef, event
from ftbridge.convert.spill.target import SpillTarget
from ftbridge.convert.to_spark.stage import stage_block
from ftbridge_common.config import settings
from ftbridge_common.errors import NonDeterministicRebuildError
from lineage.kinds import EventKind, PartitionState
from lineage.writer import call

NAMESPACE = "ftbridge"


class Restager:
    """Stages blocks of one conversion again, on request."""

    def __init__(self, boxed_refs: list, target: SpillTarget, conversion_id: str, partitions: list[dict],
                 writer) -> None:
        self.refs = boxed_refs[0]  # boxed: Ray would resolve top-level refs into their values
        self.target, self.conversion_id, self.writer = target, conversion_id, writer
        self.current = {p["partition_id"]: dict(p) for p in partitions}
        self.locks = {p["partition_id"]: threading.Lock() for p in partitions}

    def restage(self, index: int, node_id: str | None, why: str, seen_path: str) -> dict:
        """Stage block `index` again on `node_id` (any node if None); the new partition row."""
        with self.locks[index]:
            now = self.current[index]
            if now["path"] != seen_path and (node_id is None or now.get("node_id") == node_id):
                return now  # another task on this node asked first
            started = time.time()
            strategy = NodeAffinitySchedulingStrategy(node_id, soft=True) if node_id else "DEFAULT"
            meta, _ = ray.get(stage_block.options(scheduling_strategy=strategy).remote(
                self.refs[index], self.target, self.conversion_id, index), timeout=settings().to_spark_timeout_s)
            ref = PartitionRef.of(self.conversion_id, meta, self.target)
            detection = event(ref, EventKind.SPILL_MISSING if "missing" in why or "not exist" in why
                              else EventKind.CHECKSUM_MISMATCH, started, why, node_id=node_id, source="spark_task")
            if meta["checksum"] != now["checksum"]:
                call(self.writer, "update_partition", self.conversion_id, index, {"state": PartitionState.LOST},
                     [detection, event(ref, EventKind.REBUILD_REFUSED, started, f"restaged checksum "
                                       f"{meta['checksum']} != {now['checksum']}", source="ray")])
                raise NonDeterministicRebuildError(
                    f"block {index} of conversion {self.conversion_id} was staged again with different bytes "
                    f"({meta['checksum']} != {now['checksum']}); its Ray object changed.",
                    conversion_id=self.conversion_id, partition=index)
            fields = {"path": meta["path"], "node_id": meta["node_id"], "state": PartitionState.HEALTHY,
                      "rebuilt_count": now.get("rebuilt_count", 0) + 1}
            now.update(fields)
            call(self.writer, "update_partition", self.conversion_id, index, fields,
                 [detection, event(ref, EventKind.REBUILT_FROM_RAY, started, f"{why} -> {meta['path']}",
                                   source="ray")])
            return dict(now)


def start_restager(block_refs: list, target: SpillTarget, conversion_id: str, partitions: list[dict], writer):
    """The conversion's named Restager, on the driver's node (it dies with the driver)."""
    name = restager_name(conversion_id)
    actor = ray.remote(Restager).options(
        name=name, namespace=NAMESPACE, num_cpus=0, max_concurrency=64, max_restarts=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
    ).remote([block_refs], target, conversion_id, partitions, writer)
    ray.get(actor.__ray_ready__.remote(), timeout=60)
    return actor


def restager_name(conversion_id: str) -> str:
    return f"ftbridge-restage-{conversion_id}"
