"""Garbage collection of spill files: released conversions, leftovers, and active ones past an age.

Node-local files are deleted on the host that holds them (`spill/cleanup.py`), which needs a
connection to the Ray cluster; without one only this host's files are reached, and the rest
stay recorded as leftovers for the next `gc` that can reach them.
"""

from __future__ import annotations

import os
from datetime import timedelta

import ray

from ftbridge.convert.spill import cleanup
from ftbridge.convert.spill.target import SpillTarget
from ftbridge.lineage import queries, records
from ftbridge.lineage.catalog import Catalog, now
from ftbridge.lineage.kinds import ConversionStatus, EventKind
from ftbridge.lineage.reports import GcConversion, GcReport
from ftbridge.lineage.rows import new_event
from ftbridge.lineage.writer import CatalogClient


def collect(catalog: Catalog, older_than: timedelta | None, dry_run: bool) -> GcReport:
    """Delete files of released conversions (their leftovers, and any recorded copy still found)
    and of active ones older than `older_than`; report bytes per host and what still waits."""
    with catalog.read() as con:
        leftovers: dict[str, list[dict]] = {}
        for row in queries.leftovers(con):
            leftovers.setdefault(row["conversion_id"], []).append(row)
        convs = [(c, queries.partitions(con, c["conversion_id"])) for c in queries.conversions(con)]
    done: list[GcConversion] = []
    by_host: dict[str, int] = {}
    cutoff = now() - older_than if older_than is not None else None
    for conv, parts in convs:
        cid = conv["conversion_id"]
        if conv["status"] == ConversionStatus.RELEASED:
            reason = "released"
        elif cutoff is not None and conv["created_at"] < cutoff:
            reason = "expired"
        elif cid in leftovers:
            reason = "superseded copies"
        else:
            continue
        files = leftovers.get(cid, [])
        listed = {f["path"] for f in files}
        if reason == "expired":
            files = files + [p for p in parts if p["path"] not in listed]
        elif reason == "released":
            # Its recorded copies were deleted when it was released; one still found (an older
            # release that could reach only the driver's host) is deleted now.
            files = files + [p for p in parts if p["path"] not in listed and _still_here(conv, p["path"])]
        if not files:
            continue
        freed = cleanup.free(conv, files, dry_run=dry_run, whole=reason != "superseded copies")
        if not freed.files and not freed.waiting and cid not in leftovers:
            continue
        done.append(GcConversion(id=cid, reason=reason, files=freed.files, bytes=freed.total,
                                 by_host=dict(freed.by_host), waiting=len(freed.waiting)))
        for host, size in freed.by_host.items():
            by_host[host] = by_host.get(host, 0) + size
        if dry_run:
            continue
        known = {f["path"]: f["reason"] for f in leftovers.get(cid, [])}
        expired = reason == "expired"
        events = [new_event(cid, None, EventKind.RELEASED, source="gc", detail=f"expired; {freed.describe()}")]
        CatalogClient.direct(catalog).files_freed(
            cid, freed.gone, [records.leftover(cid, w, known.get(w["path"], "host_down")) for w in freed.waiting],
            events if expired else [], release=expired)
    return GcReport(dry_run=dry_run, bytes_freed=sum(c.bytes for c in done), files=sum(c.files for c in done),
                    by_host=by_host, waiting=sum(c.waiting for c in done), ray=ray.is_initialized(), conversions=done)


def _still_here(conv: dict, path: str) -> bool:
    """Whether a recorded copy of a released conversion can be seen from here (shared stores: always ask)."""
    target = SpillTarget.recorded(conv)
    return os.path.isfile(path) if target.is_local else True
