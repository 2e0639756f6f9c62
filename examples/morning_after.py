"""The morning after, as a script: what the night's jobs lost and rebuilt, the repairs, the clean-up.

Over ftbridge's Python API only (`audit`, `verify`, `recover`, `gc`): what an orchestrator task
or a cron job runs after the nightly ETL and training jobs. It

1. audits every conversion and training run of the catalog (recovery events, time to recover);
2. re-checks the files of every active conversion (presence, size, checksum; recorded);
3. rebuilds, through its recipe, what a conversion lost (the recipe runs in a Spark session
   started for it on `RAY_ADDRESS`'s cluster, or an embedded one);
4. frees the files of released conversions (and, with `--gc-older-than`, expires old ones).

Exit status: the worst health left (0 healthy, 1 degraded but rebuildable, 2 data lost), as
`ftbridge verify` has, so a scheduler can alert on it.

Run: python examples/morning_after.py --catalog PATH [--gc-older-than 7d] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

import ftbridge


def run(catalog: str | None = None, gc_older_than: str | None = None) -> dict:
    """The night's summary and what was repaired, as one JSON-ready document."""
    audit = ftbridge.audit(catalog=catalog)
    recipes = {c.id: c.recipe for c in audit.conversions}
    checked = ftbridge.verify(catalog=catalog)
    repairs, left = [], {}
    for report in checked:
        left[report.id] = report.health
        if report.health == ftbridge.Health.HEALTHY:
            continue
        if not recipes.get(report.id):
            continue  # degraded: only the live driver can rebuild it (on its next read); lost: nothing can
        fixed = ftbridge.recover(report.id, catalog=catalog)
        left[report.id] = fixed.health
        repairs.append({"id": report.id, "rebuilt": [p.partition for p in fixed.rebuilt],
                        "failed": [{"partition": p.partition, "error": p.error} for p in fixed.failed]})
    freed = ftbridge.gc(older_than=gc_older_than, catalog=catalog)
    worst = max(left.values(), default=ftbridge.Health.HEALTHY)
    return {
        "catalog": audit.catalog,
        "conversions": len(audit.conversions),
        "recovery_events": sum(c.recovery_events for c in audit.conversions),
        "runs": [{"id": r.id, "status": r.status, "worker_failures": r.worker_failures, "time_lost_s": r.time_lost_s}
                 for r in audit.runs],
        "verified": {cid: health.name.lower() for cid, health in left.items()},
        "repairs": repairs,
        "bytes_freed": freed.bytes_freed,
        "files_waiting": freed.waiting,
        "exit_code": int(worst),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default=None, help="catalog file (default: $FTBRIDGE_CATALOG)")
    parser.add_argument("--gc-older-than", default=None, help="also expire active conversions older than this (7d)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    try:
        doc = run(args.catalog, args.gc_older_than)
    except ftbridge.FtbridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 5
    if args.json:
        print(json.dumps(doc, indent=2))
        return doc["exit_code"]
    print(f"{doc['conversions']} conversions in {doc['catalog']}, {doc['recovery_events']} recovery events")
    for r in doc["runs"]:
        print(f"  run {r['id'][:12]} {r['status']}: {r['worker_failures']} worker failures, {r['time_lost_s']:.1f}s lost")
    for cid, health in doc["verified"].items():
        print(f"  conversion {cid[:12]}: {health}")
    for r in doc["repairs"]:
        print(f"  rebuilt {r['id'][:12]} partitions {r['rebuilt']}" + (f", failed {r['failed']}" if r["failed"] else ""))
    print(f"freed {doc['bytes_freed']:,} bytes; {doc['files_waiting']} files wait for their host")
    return doc["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
