"""Garbage collection of spill files: released conversions, and active ones past an age."""

from __future__ import annotations

from datetime import timedelta

from ftbridge.convert.spill.target import delete_spill_files, existing_files
from lineage import queries, records
from lineage.catalog import Catalog, new_event, now
from lineage.kinds import ConversionStatus, EventKind, PartitionState


def collect(catalog: Catalog, older_than: timedelta | None, dry_run: bool) -> dict:
    """Delete spill files of released conversions (and of active ones older than `older_than`)."""
    with catalog.read() as con:
        convs = [(c, queries.partitions(con, c["conversion_id"])) for c in queries.conversions(con)]
    report = {"dry_run": dry_run, "bytes_freed": 0, "files": 0, "conversions": []}
    cutoff = now() - older_than if older_than is not None else None
    for conv, parts in convs:
        if conv["status"] == ConversionStatus.RELEASED:
            reason = "released"
        elif cutoff is not None and conv["created_at"] < cutoff:
            reason = "expired"
        else:
            continue
        files = existing_files(conv, parts)
        if not files and reason == "released":
            continue
        size = sum(s for _, s in files)
        report["conversions"].append({"id": conv["conversion_id"], "reason": reason, "files": len(files),
                                      "bytes": size})
        report["files"] += len(files)
        report["bytes_freed"] += size
        if dry_run:
            continue
        delete_spill_files(conv, parts)
        if reason == "expired":
            with catalog.write() as con:
                records.set_conversion_status(con, conv["conversion_id"], ConversionStatus.RELEASED,
                                              PartitionState.RELEASED)
                records.insert_events(con, [new_event(conv["conversion_id"], None, EventKind.RELEASED, source="gc",
                                                      detail=f"expired; {size} bytes freed")])
    return report
