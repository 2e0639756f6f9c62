"""Rebuild what is missing or corrupt in a recorded conversion, through its recipe."""

from __future__ import annotations

import logging

from ftbridge.cluster import session as cluster
from ftbridge.common.errors import ConversionError, FtbridgeError, PartitionLostError
from ftbridge.convert.ops.verify import Health, verify
from ftbridge.convert.rebuild.recipe import RecipeRebuilder
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.kinds import BAD_STATES
from ftbridge.lineage.writer import start_writer

log = logging.getLogger(__name__)


def recover(catalog: Catalog, conversion_id: str, on_start=None, on_partition=None) -> dict:
    """Verify, then rebuild each bad partition with the conversion's recipe.

    Returns a report with `rebuilt` and `failed` partitions; raises PartitionLostError when the
    conversion has bad partitions and no recipe.
    """
    report = verify(catalog, conversion_id)
    cid = report["id"]
    bad = [r["partition"] for r in report["partitions"] if r["state"] in BAD_STATES]
    report.update(rebuilt=[], failed=[])
    if on_start:
        on_start(len(bad))
    if not bad:
        return report
    conv, parts = catalog.load(cid)
    if not conv.get("recipe"):
        raise PartitionLostError(
            f"conversion {cid} has {len(bad)} missing or corrupt partitions {bad[:20]} and no recipe to rebuild "
            "them. Reopen it with ftbridge.open_recoverable() in the driver that made it, or convert again with "
            "recipe='package.module:function'.", conversion_id=cid)
    cluster.ensure_ray()
    rebuilder = RecipeRebuilder(conv, parts, catalog, start_writer(catalog))
    try:
        for pid in bad:
            try:
                meta = rebuilder.rebuild(pid, "ftbridge recover")
                report["rebuilt"].append({"partition": pid, "path": meta["path"], "node_id": meta["node_id"]})
            except FtbridgeError as exc:
                report["failed"].append({"partition": pid, "error": str(exc)})
                if isinstance(exc, ConversionError) and rebuilder.live is None:
                    break  # the recipe itself is unusable: every partition would fail the same way
            if on_partition:
                on_partition(pid)
    finally:
        if rebuilder.started_spark:
            cluster.stop_spark(cleanup_data=False)
    report["exit_code"] = int(Health.HEALTHY if not report["failed"] else Health.DATA_LOST)
    return report
