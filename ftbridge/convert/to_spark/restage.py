"""Staging a block again from its Ray object, when Spark finds its file missing, corrupt or elsewhere.

One named `Restager` actor per driver process (started on the first `to_spark`, kept warm like
the rebuild service) holds every live Ray -> Spark conversion's block references (so the blocks
stay in Ray's object store, or can be reconstructed by Ray, while the DataFrame lives). Spark's
Python workers call it by name; it stages the block on the asking node, checks the bytes
against the recorded checksum and records what happened.
"""

from __future__ import annotations

import threading
import time
import uuid

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftbridge.common.config import RAY_NAMESPACE, settings
from ftbridge.common.errors import NonDeterministicRebuildError, PartitionLostError
from ftbridge.convert.partition import PartitionRef, event
from ftbridge.convert.spill.target import SpillTarget
from ftbridge.convert.to_spark.stage import stage_block
from ftbridge.lineage.kinds import EventKind, PartitionState
from ftbridge.lineage.rows import PartitionUpdate


class _Staged:
    """One conversion's blocks, target, recorded partitions and catalog writer."""

    def __init__(self, refs: list, target: SpillTarget, conversion_id: str, partitions: list[dict], writer) -> None:
        self.refs, self.target, self.conversion_id, self.writer = refs, target, conversion_id, writer
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
                self.writer.update_partition(self.conversion_id, index, PartitionUpdate(state=PartitionState.LOST),
                     [detection, event(ref, EventKind.REBUILD_REFUSED, started, f"restaged checksum "
                                       f"{meta['checksum']} != {now['checksum']}", source="ray")])
                raise NonDeterministicRebuildError(
                    f"block {index} of conversion {self.conversion_id} was staged again with different bytes "
                    f"({meta['checksum']} != {now['checksum']}); its Ray object changed.",
                    conversion_id=self.conversion_id, partition=index)
            update = PartitionUpdate(state=PartitionState.HEALTHY, path=meta["path"], node_id=meta["node_id"],
                                     rebuilt_count=now.get("rebuilt_count", 0) + 1)
            now.update(update.fields())
            self.writer.update_partition(self.conversion_id, index, update,
                 [detection, event(ref, EventKind.REBUILT_FROM_RAY, started, f"{why} -> {meta['path']}",
                                   source="ray")])
            return dict(now)


class Restager:
    """Stages blocks of this driver's Ray -> Spark conversions again, on request."""

    def __init__(self) -> None:
        self.conversions: dict[str, _Staged] = {}

    def add(self, conversion_id: str, boxed_refs: list, target: SpillTarget, partitions: list[dict],
            writer) -> None:
        # boxed: Ray would resolve top-level refs into their values
        self.conversions[conversion_id] = _Staged(boxed_refs[0], target, conversion_id, partitions, writer)

    def remove(self, conversion_id: str) -> None:
        self.conversions.pop(conversion_id, None)

    def restage(self, conversion_id: str, index: int, node_id: str | None, why: str, seen_path: str) -> dict:
        """Stage block `index` again on `node_id` (any node if None); the new partition row."""
        staged = self.conversions.get(conversion_id)
        if staged is None:
            raise PartitionLostError(conversion_id=conversion_id, partition=index, node_id=node_id,
                                     cause=f"{why}; the conversion was released")
        return staged.restage(index, node_id, why, seen_path)


def start_restager():
    """This driver's named Restager, on the driver's node (it dies with the driver); (handle, name).

    Not waited for: it starts while Spark reads, and calls queue until it is up.
    """
    name = f"ftbridge-restage-{uuid.uuid4().hex[:12]}"
    actor = ray.remote(Restager).options(
        name=name, namespace=RAY_NAMESPACE, num_cpus=0, max_concurrency=64, max_restarts=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
    ).remote()
    return actor, name
