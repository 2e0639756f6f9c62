"""Audit figures, computed only from recorded events and partition states (never estimated)."""

from __future__ import annotations

import statistics

from lineage import queries
from lineage.kinds import EventKind as K
from lineage.kinds import PartitionState

DETECTIONS = (K.SPILL_MISSING, K.CHECKSUM_MISMATCH, K.VERIFY_FAILED)
REBUILDS = (K.REBUILT_FROM_SPARK, K.REBUILT_FROM_RECIPE, K.REBUILT_FROM_RAY)
RECOVERY_KINDS = DETECTIONS + REBUILDS + (K.OBJECT_RECONSTRUCTED, K.UNRECOVERABLE, K.REBUILD_REFUSED)


def partition_health(parts: list[dict]) -> dict[str, int]:
    """healthy / degraded (missing or corrupt: rebuildable) / lost / released counts."""
    out = {"healthy": 0, "degraded": 0, "lost": 0, "released": 0}
    for p in parts:
        state = p["state"]
        if state in (PartitionState.MISSING, PartitionState.CORRUPT):
            out["degraded"] += 1
        elif state in out:
            out[state] += 1
    return out


def recovery_times(events: list[dict]) -> list[float]:
    """Seconds from detecting each loss to the end of its rebuild; reconstructed reads count their run."""
    times = []
    last_detect: dict = {}
    for ev in sorted(events, key=lambda e: e["started_at"]):
        key = (ev["conversion_id"], ev["partition_id"])
        if ev["kind"] in DETECTIONS:
            last_detect.setdefault(key, ev["started_at"])
        elif ev["kind"] in REBUILDS:
            start = last_detect.pop(key, ev["started_at"])
            times.append((ev["finished_at"] - start).total_seconds())
        elif ev["kind"] == K.OBJECT_RECONSTRUCTED and key not in last_detect:
            times.append(float(ev["duration_s"]))
    return times


def summarize(conv: dict, parts: list[dict], events: list[dict]) -> dict:
    ttr = recovery_times(events)
    recoveries = [e for e in events if e["kind"] in RECOVERY_KINDS]
    return {
        "id": conv["conversion_id"],
        "name": conv["name"],
        "created": conv["created_at"].isoformat(),
        "status": conv["status"],
        "direction": conv.get("direction") or "spark_to_ray",
        "rows": conv["total_rows"],
        "bytes": conv["total_bytes"],
        "partitions": partition_health(parts),
        "recovery_events": len(recoveries),
        "rebuilt": sum(1 for e in events if e["kind"] in REBUILDS),
        "reconstructed": sum(1 for e in events if e["kind"] == K.OBJECT_RECONSTRUCTED),
        "time_to_recover_s": {
            "median": round(statistics.median(ttr), 3) if ttr else None,
            "worst": round(max(ttr), 3) if ttr else None,
        },
        "recipe": conv.get("recipe"),
        "spill_root": conv["spill_root"],
    }


def audit(con) -> list[dict]:
    out = []
    for conv in queries.conversions(con):
        cid = conv["conversion_id"]
        out.append(summarize(conv, queries.partitions(con, cid), queries.events(con, cid)))
    return out
