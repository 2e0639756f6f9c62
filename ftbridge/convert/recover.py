"""Rebuild what is missing or corrupt in a recorded conversion, through its recipe."""

from __future__ import annotations

import logging

from ftbridge.convert.verify import CORRUPT, LOST, MISSING, verify
from ftbridge.errors import ConversionError, FtbridgeError
from lineage import queries
from lineage.catalog import Catalog

log = logging.getLogger(__name__)


def recover(catalog: Catalog, conversion_id: str, on_start=None, on_partition=None) -> dict:
    """Verify, then rebuild each bad partition with the conversion's recipe.

    Returns a report with `rebuilt` and `failed` partitions; raises ConversionError when the
    conversion has bad partitions and no recipe.
    """
    from ftbridge.cluster import session as cluster
    from ftbridge.convert.engine import _writer
    from ftbridge.convert.recipes import RecipeRebuilder

    report = verify(catalog, conversion_id)
    cid = report["id"]
    bad = [r["partition"] for r in report["partitions"] if r["state"] in (MISSING, CORRUPT, LOST)]
    report.update(rebuilt=[], failed=[])
    if on_start:
        on_start(len(bad))
    if not bad:
        return report
    with catalog.read() as con:
        conv = queries.conversion(con, cid)
        parts = queries.partitions(con, cid)
    if not conv.get("recipe"):
        raise ConversionError(
            f"conversion {cid} has {len(bad)} missing or corrupt partitions {bad[:20]} and no recipe to rebuild "
            "them. Reopen it with ftbridge.open_recoverable() in the driver that made it, or convert again with "
            "recipe='package.module:function'.", conversion_id=cid)
    cluster.ensure_ray()
    rebuilder = RecipeRebuilder(conv, parts, catalog, _writer(catalog))
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
    report["exit_code"] = 0 if not report["failed"] else 2
    return report
