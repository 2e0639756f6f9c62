"""One partition as the read and rebuild rooms pass it around, and its catalog events."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ftbridge.convert.spill.target import SpillTarget
from ftbridge.lineage.kinds import EventKind
from ftbridge.lineage.rows import EventRow, new_event
from ftbridge.lineage.writer import CatalogClient


def runs(n: int, k: int) -> list[tuple[int, int]]:
    """[0, n) as at most `k` contiguous runs `(start, stop)` whose lengths differ by at most one:
    never empty when n > 0; one empty run (0, 0) when n is 0."""
    k = max(1, min(k, n))
    cuts = [i * n // k for i in range(k + 1)]
    return list(zip(cuts, cuts[1:]))


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

    @staticmethod
    def of(conversion_id: str, row: dict, target: SpillTarget) -> PartitionRef:
        """From a spill job's metadata row or a catalog partitions row."""
        return PartitionRef(conversion_id, int(row["partition_id"]), row["path"], row.get("node_id"),
                            int(row["num_rows"]), int(row["num_bytes"]), row["checksum"], target)


@dataclass(frozen=True)
class ReadContext:
    """Shared by all read tasks of one Dataset build."""

    token: str                      # unique per materialized Dataset: tells a re-read from a first read;
                                    # "" for a streaming Dataset (each pass reads every partition)
    writer: CatalogClient           # in the background: a task never fails or waits long on the catalog
    rebuild_service: str | None     # named RebuildService actor, or None when nothing can rebuild
    schema: pa.Schema | None = None  # the Dataset's schema; files in Spark's own labels are cast to it
    # Ray Data's DataContext.target_max_block_size where the Dataset was made (None: no limit).
    block_bytes: int | None = 128 << 20


def event(ref: PartitionRef, kind: EventKind, started: float, detail: str = "", node_id: str | None = None,
          source: str = "read_task") -> EventRow:
    return new_event(ref.conversion_id, ref.partition_id, kind, started, node_id or ref.node_id, source, detail)
