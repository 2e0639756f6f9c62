"""Garbage collection of spill files: released conversions, and active ones past an age."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa

from ftbridge.convert.spill import SpillTarget
from lineage import queries, records
from lineage.catalog import Catalog, new_event, now


def _existing(conv: dict, parts: list[dict]) -> list[tuple[str, int]]:
    fs, _ = SpillTarget(conv["spill_root"], bool(conv["node_local"])).filesystem()
    out = []
    for p in parts:
        try:
            info = fs.get_file_info(p["path"])
        except (OSError, pa.ArrowException):
            continue
        if info.type == pa.fs.FileType.File:
            out.append((p["path"], info.size or 0))
    return out


def collect(catalog: Catalog, older_than: timedelta | None, dry_run: bool) -> dict:
    from ftbridge.convert.engine import delete_spill_files

    with catalog.read() as con:
        convs = [(c, queries.partitions(con, c["conversion_id"])) for c in queries.conversions(con)]
    report = {"dry_run": dry_run, "bytes_freed": 0, "files": 0, "conversions": []}
    cutoff = now() - older_than if older_than is not None else None
    for conv, parts in convs:
        if conv["status"] == "released":
            reason = "released"
        elif cutoff is not None and conv["created_at"] < cutoff:
            reason = "expired"
        else:
            continue
        files = _existing(conv, parts)
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
                records.set_conversion_status(con, conv["conversion_id"], "released", "released")
                records.insert_events(con, [new_event(conv["conversion_id"], None, "released", source="gc",
                                                      detail=f"expired; {size} bytes freed")])
    return report
