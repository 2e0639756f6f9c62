"""Rebuilding one partition through Spark: the same plan, run for that partition only.

A `SparkRebuilder` holds what a conversion needs to be rebuilt in this process: its persisted
Arrow batches (so the rebuild is a byte copy of Spark's cached block when it survives, else a
re-run of the lineage), its spill target and the recorded partitions. A rebuilt file must match
the recorded checksum, unless the conversion accepts non-deterministic plans.
"""

from __future__ import annotations

import threading
import time

from ftbridge.common.errors import NonDeterministicRebuildError
from ftbridge.convert.partition import PartitionRef, event
from ftbridge.convert.spill.batches import ArrowBatches
from ftbridge.convert.spill.job import spill_one
from ftbridge.convert.spill.target import SpillTarget
from ftbridge.lineage.kinds import EventKind, PartitionState
from ftbridge.lineage.rows import PartitionUpdate


class SparkRebuilder:
    """Rebuilds partitions of one conversion from Spark DataFrame it was made from (or its recipe's)."""

    def __init__(self, conversion_id: str, batches: ArrowBatches, target: SpillTarget, catalog, writer,
                 partitions: list[dict], allow_nondeterministic: bool, spark_owner=None,
                 rebuilt_kind: EventKind = EventKind.REBUILT_FROM_SPARK, recorded=None) -> None:
        """`recorded`: the conversion's record still under way (anything with a `wait()`, such as a
        `writer.Pending`): a rebuild waits for it, so its partition update never lands before the
        partition's row (and a rebuilder made before the spill job has `know`n its partitions)."""
        self.conversion_id, self.batches, self.target = conversion_id, batches, target
        self.catalog, self.writer = catalog, writer
        self.original = {p["partition_id"]: dict(p) for p in partitions}
        self.allow_nondeterministic = allow_nondeterministic
        self.spark_owner = spark_owner      # the SparkOnRay session whose stop must release this conversion
        self.rebuilt_kind = rebuilt_kind
        self.lock = threading.Lock()
        self.rebuilt: dict[int, dict] = {}  # partition -> the file this rebuilder made for it last
        self.recorded = recorded

    def know(self, partitions: list[dict]) -> None:
        """The spill job's rows, once it has ended (a conversion's rebuilder is made before it)."""
        self.original = {p["partition_id"]: dict(p) for p in partitions}

    def rebuild(self, partition_id: int, why: str, failed_path: str = "") -> dict:
        """Run exactly this partition through Spark again; record it; return the new file's metadata.

        A reader that failed on an older file than the one this rebuilder made since (a streaming
        Dataset reads its original paths on every pass) gets that file instead of a new rebuild;
        if that one fails too, its path is the failed one and the partition is rebuilt again.
        """
        started = time.time()
        if self.recorded is not None:
            self.recorded.wait()
        with self.lock:
            last = self.rebuilt.get(partition_id)
            if last is not None and failed_path and failed_path != last["path"]:
                return {**last, "reused": True}
            meta = spill_one(self.batches, self.target, self.conversion_id, partition_id)
        orig = self.original[partition_id]
        ref = PartitionRef.of(self.conversion_id, meta, self.target)
        if meta["checksum"] != orig["checksum"] and not self.allow_nondeterministic:
            self._refuse(ref, meta, orig, started)
        update = PartitionUpdate(state=PartitionState.HEALTHY, path=meta["path"], node_id=meta["node_id"],
                                 num_bytes=meta["num_bytes"], checksum=meta["checksum"], num_rows=meta["num_rows"],
                                 rebuilt_count=orig.get("rebuilt_count", 0) + 1)
        orig["rebuilt_count"] = update.rebuilt_count
        if self.allow_nondeterministic:
            orig.update(checksum=meta["checksum"], num_bytes=meta["num_bytes"], num_rows=meta["num_rows"])
        self.writer.update_partition(self.conversion_id, partition_id, update,
             [event(ref, self.rebuilt_kind, started, f"{why} -> {meta['path']}", source="spark")])
        with self.lock:
            self.rebuilt[partition_id] = meta
        return meta

    def _refuse(self, ref: PartitionRef, meta: dict, orig: dict, started: float) -> None:
        detail = (f"rebuilt checksum {meta['checksum']} ({meta['num_rows']} rows) != original "
                  f"{orig['checksum']} ({orig['num_rows']} rows)")
        self.writer.update_partition(self.conversion_id, ref.partition_id, PartitionUpdate(state=PartitionState.LOST),
             [event(ref, EventKind.REBUILD_REFUSED, started, detail, source="spark")])
        raise NonDeterministicRebuildError(
            f"partition {ref.partition_id} of conversion {self.conversion_id} came out different when Spark "
            f"rebuilt it ({detail}): the plan is not deterministic. Make it deterministic (sort, seed "
            "random columns) or pass allow_nondeterministic=True.",
            conversion_id=self.conversion_id, partition=ref.partition_id, node_id=meta.get("node_id"))
