"""Retention: drop the partitions and events of long-released conversions, then compact the file.

A released conversion keeps its one conversions row (id, name, plan hash, sizes, when it was
created and released) for the audit; its partition rows and events go once it has been
released for longer than the retention age. A training run that ended before then keeps its
runs and run_inputs rows; its timeline (run_events) goes. DuckDB reuses freed blocks but does not give
them back to the file system, so `compact` rewrites the catalog into a fresh file and swaps
it in, holding the file's write lock throughout (writers wait and retry, readers too).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import duckdb

from ftbridge.common import foreign
from ftbridge.lineage.catalog import Catalog, now
from ftbridge.lineage.kinds import ConversionStatus
from ftbridge.lineage.reports import PruneReport

log = logging.getLogger(__name__)

_EXPIRED = "SELECT conversion_id FROM conversions WHERE status = ? AND released_at < ?"
_ENDED_RUNS = "SELECT run_id FROM runs WHERE finished_at < ?"


def prune(catalog: Catalog, older_than: timedelta, dry_run: bool = False) -> PruneReport:
    """Delete partitions and events of conversions released before now - `older_than`; compact.

    Returns what was (or, with `dry_run`, would be) removed and the file size before and after.
    """
    cutoff = now() - older_than
    before = file_bytes(catalog.path)
    with catalog.write() as con:
        args = [ConversionStatus.RELEASED, cutoff]
        counts = {table: con.execute(f"SELECT count(*) FROM {table} WHERE conversion_id IN ({_EXPIRED})",
                                     args).fetchone()[0] for table in ("partitions", "events")}
        conversions = con.execute(f"SELECT count(*) FROM ({_EXPIRED})", args).fetchone()[0]
        counts["run_events"] = con.execute(f"SELECT count(*) FROM run_events WHERE run_id IN ({_ENDED_RUNS})",
                                           [cutoff]).fetchone()[0]
        if not dry_run:
            for table in ("events", "partitions"):
                con.execute(f"DELETE FROM {table} WHERE conversion_id IN ({_EXPIRED})", args)
            con.execute(f"DELETE FROM run_events WHERE run_id IN ({_ENDED_RUNS})", [cutoff])
    if not dry_run and any(counts.values()):
        compact(catalog)
    return PruneReport(conversions=conversions, partitions_removed=counts["partitions"],
                       events_removed=counts["events"], run_events_removed=counts["run_events"],
                       catalog_bytes_before=before, catalog_bytes_after=file_bytes(catalog.path), cutoff=cutoff,
                       dry_run=dry_run)


def compact(catalog: Catalog) -> None:
    """Rewrite the catalog into a new file with only its live data and put it in place."""
    fresh = f"{catalog.path}.compact-{os.getpid()}"
    for leftover in (fresh, fresh + ".wal"):
        if os.path.exists(leftover):
            os.remove(leftover)
    with catalog.write() as con:  # checks the schema and takes the write lock
        pass
    try:
        con = duckdb.connect(catalog.path)
    except duckdb.Error as exc:
        raise foreign.catalog_open_failed(exc, catalog.path) from exc
    try:
        con.execute("CHECKPOINT")  # nothing left in the WAL: closing the old file writes nothing
        (name,) = con.execute("SELECT current_database()").fetchone() or ("memory",)
        con.execute(f"ATTACH '{fresh}' AS ftbridge_compact")
        con.execute(f'COPY FROM DATABASE "{name}" TO ftbridge_compact')
        con.execute("DETACH ftbridge_compact")
        os.chmod(fresh, 0o600)
        os.replace(fresh, catalog.path)
    except BaseException:
        for leftover in (fresh, fresh + ".wal"):
            if os.path.exists(leftover):
                os.remove(leftover)
        raise
    finally:
        con.close()
    log.info("catalog %s compacted to %d bytes", catalog.path, file_bytes(catalog.path))


def file_bytes(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + ".wal") if os.path.exists(p))
