"""A conversion's spill files as a public Ray Data `Datasource`.

Each `ReadTask` serves a contiguous run of partitions, in partition order, so a Dataset built
with `preserve_order` keeps Spark's partition order. Blocks are outputs of Ray Data's read
tasks, so when a node dies with blocks in its object store, Ray's lineage reconstruction
re-runs the read task for them; a read that finds its file missing or corrupt has Spark
rebuild exactly that partition (see `task.py`).

Read tasks ask for no CPU: Spark executor actors may hold every CPU, and a read that waits
for a CPU held by an executor that waits for the read would deadlock.
"""

from __future__ import annotations

import functools

from ray.data import Datasource

from ftbridge.adapters import ray as ray_adapter
from ftbridge.convert.partition import PartitionRef, ReadContext, runs
from ftbridge.convert.read.task import read_group


class SpillDatasource(Datasource):
    """Read tasks over the spill files of one conversion."""

    def __init__(self, refs: list[PartitionRef], ctx: ReadContext, num_tasks: int) -> None:
        super().__init__()
        self._refs = sorted(refs, key=lambda r: r.partition_id)
        self._ctx = ctx
        self._groups = [tuple(self._refs[a:b]) for a, b in runs(len(self._refs), num_tasks) if b > a]

    def get_name(self) -> str:
        return "FtbridgeSpill"

    def estimate_inmemory_data_size(self) -> int:
        return sum(r.num_bytes for r in self._refs)

    def groups(self) -> list[tuple[PartitionRef, ...]]:
        """Contiguous runs of partitions, one per read task (sizes differ by at most one)."""
        return list(self._groups)

    def num_tasks(self) -> int:
        return len(self._groups)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context=None,
                       **_) -> list:
        # `parallelism` is Ray Data's guess; the groups were sized when the source was made
        # (a few per node), because a cold read worker costs more than a read.
        tasks = []
        for group in self._groups:
            # Ray Data names a read function by its __name__ (e.g. when it is large: thousands of
            # partitions in one task); a bare partial has none.
            read_fn = functools.update_wrapper(functools.partial(read_group, group, self._ctx), read_group)
            tasks.append(ray_adapter.read_task(
                read_fn,
                num_rows=sum(r.num_rows for r in group), size_bytes=sum(r.num_bytes for r in group),
                schema=self._ctx.schema, per_task_row_limit=per_task_row_limit))
        return tasks
