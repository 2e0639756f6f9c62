"""Rebuild what is missing or corrupt in a recorded conversion, through its recipe."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ftbridge.cluster import session as cluster
from ftbridge.common.errors import ConversionError, FtbridgeError, PartitionLostError
from ftbridge.convert.ops.verify import verify
from ftbridge.convert.rebuild.recipe import RecipeRebuilder
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.kinds import BAD_STATES
from ftbridge.lineage.reports import FailedPartition, RebuiltPartition, RecoverReport
from ftbridge.lineage.writer import start_writer

log = logging.getLogger(__name__)


def recover(catalog: Catalog, conversion_id: str,
            on_progress: Callable[[int, int], None] | None = None) -> RecoverReport:
    """Verify, then rebuild each bad partition with the conversion's recipe.

    `on_progress(done, total)` is called once the bad partitions are known and after each one.
    The report lists the `rebuilt` and `failed` partitions; raises PartitionLostError when the
    conversion has bad partitions and no recipe.
    """
    verified = verify(catalog, conversion_id)
    cid = verified.id
    bad = [r.partition for r in verified.partitions if r.state in BAD_STATES]
    rebuilt: list[RebuiltPartition] = []
    failed: list[FailedPartition] = []
    if on_progress:
        on_progress(0, len(bad))
    if not bad:
        return RecoverReport(id=cid, name=verified.name, verified=verified, rebuilt=rebuilt, failed=failed)
    conv, parts = catalog.load(cid)
    if not conv.get("recipe"):
        raise PartitionLostError(
            f"conversion {cid} has {len(bad)} missing or corrupt partitions {bad[:20]} and no recipe to rebuild "
            "them. Reopen it with ftbridge.open_recoverable() in the driver that made it, or convert again with "
            "recipe='package.module:function'.", conversion_id=cid)
    cluster.ensure_ray()
    rebuilder = RecipeRebuilder(conv, parts, catalog, start_writer(catalog))
    try:
        for done, pid in enumerate(bad, 1):
            try:
                meta = rebuilder.rebuild(pid, "ftbridge recover")
                rebuilt.append(RebuiltPartition(partition=pid, path=meta["path"], node_id=meta["node_id"]))
            except FtbridgeError as exc:
                failed.append(FailedPartition(partition=pid, error=str(exc)))
                if isinstance(exc, ConversionError) and rebuilder.live is None:
                    break  # the recipe itself is unusable: every partition would fail the same way
            if on_progress:
                on_progress(done, len(bad))
    finally:
        if rebuilder.started_spark:
            cluster.stop_spark(cleanup_data=False)
    return RecoverReport(id=cid, name=verified.name, verified=verified, rebuilt=rebuilt, failed=failed)
