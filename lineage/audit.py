"""Audit figures, computed only from recorded events and partition states (never estimated)."""

from __future__ import annotations

import statistics

from ftbridge.lineage import queries
from ftbridge.lineage.kinds import EventKind as K
from ftbridge.lineage.kinds import PartitionState, RunStatus
from ftbridge.lineage.kinds import RunEventKind as RK
from ftbridge.lineage.reports import ConversionSummary, PartitionHealth, RecoveryTimes, RunSummary, TimelineEntry

DETECTIONS = (K.SPILL_MISSING, K.CHECKSUM_MISMATCH, K.VERIFY_FAILED)
REBUILDS = (K.REBUILT_FROM_SPARK, K.REBUILT_FROM_RECIPE, K.REBUILT_FROM_RAY)
RECOVERY_KINDS = DETECTIONS + REBUILDS + (K.OBJECT_RECONSTRUCTED, K.UNRECOVERABLE, K.REBUILD_REFUSED, K.SPILL_RETRIED)


def partition_health(parts: list[dict]) -> PartitionHealth:
    """healthy / degraded (missing or corrupt: rebuildable) / lost / released counts."""
    out = {"healthy": 0, "degraded": 0, "lost": 0, "released": 0}
    for p in parts:
        state = p["state"]
        if state in (PartitionState.MISSING, PartitionState.CORRUPT):
            out["degraded"] += 1
        elif state in out:
            out[state] += 1
    return PartitionHealth(**out)


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


def summarize(conv: dict, parts: list[dict], events: list[dict]) -> ConversionSummary:
    ttr = recovery_times(events)
    recoveries = [e for e in events if e["kind"] in RECOVERY_KINDS]
    return ConversionSummary(
        id=conv["conversion_id"],
        name=conv["name"],
        created=conv["created_at"].isoformat(),
        status=conv["status"],
        direction=conv.get("direction") or "spark_to_ray",
        rows=conv["total_rows"],
        bytes=conv["total_bytes"],
        partitions=partition_health(parts),
        recovery_events=len(recoveries),
        rebuilt=sum(1 for e in events if e["kind"] in REBUILDS),
        reconstructed=sum(1 for e in events if e["kind"] == K.OBJECT_RECONSTRUCTED),
        time_to_recover_s=RecoveryTimes(median=round(statistics.median(ttr), 3) if ttr else None,
                                        worst=round(max(ttr), 3) if ttr else None),
        recipe=conv.get("recipe"),
        spill_root=conv["spill_root"],
    )


def audit(con) -> list[ConversionSummary]:
    out = []
    for conv in queries.conversions(con):
        cid = conv["conversion_id"]
        out.append(summarize(conv, queries.partitions(con, cid), queries.events(con, cid)))
    return out


def _intervals(run_events: list[dict]) -> tuple[list[float], list[tuple[float, float | None]]]:
    """Lengths of the intervals between progress points (start, reports): (clean ones, [(length,
    seconds a mid-epoch resume in it recorded as lost, or None)] for the ones with a failure)."""
    clean: list[float] = []
    disrupted: list[tuple[float, float | None]] = []
    last, failed, resumed = None, False, None
    for ev in run_events:
        if ev["kind"] == RK.WORKER_FAILED:
            failed = True
        elif ev["kind"] == RK.RESUMED and ev.get("lost_s") is not None:
            resumed = (resumed or 0.0) + float(ev["lost_s"])
        elif ev["kind"] in (RK.STARTED, RK.REPORT):
            if last is not None:
                length = (ev["happened_at"] - last).total_seconds()
                if failed:
                    disrupted.append((length, resumed))
                else:
                    clean.append(length)
            last, failed, resumed = ev["happened_at"], False, None
        elif ev["kind"] in (RK.FINISHED, RK.FAILED) and failed and last is not None:
            disrupted.append(((ev["happened_at"] - last).total_seconds(), resumed))
    return clean, disrupted


def time_lost(run_events: list[dict]) -> float:
    """Seconds the failures cost. A failure the run resumed from mid-epoch costs what its resume
    recorded (from the checkpoint it went on from to the resume: work redone + restart); any other
    costs its interval between progress points minus the median clean interval."""
    clean, disrupted = _intervals(run_events)
    typical = statistics.median(clean) if clean else 0.0
    return round(sum(resumed if resumed is not None else max(0.0, d - typical) for d, resumed in disrupted), 3)


def summarize_run(run: dict, inputs: dict[str, str], run_events: list[dict], input_events: list[dict]) -> RunSummary:
    reports = [e for e in run_events if e["kind"] == RK.REPORT]
    epochs = {e["epoch"] for e in reports if e["epoch"] is not None}
    failures = sum(1 for e in run_events if e["kind"] == RK.WORKER_FAILED)
    restarts = failures - (1 if failures and run["status"] == RunStatus.FAILED else 0)
    end = run["finished_at"]
    return RunSummary(
        id=run["run_id"], name=run["name"], ray_run_id=run["ray_run_id"], trainer=run["trainer"],
        status=run["status"], started=run["started_at"].isoformat(),
        finished=end.isoformat() if end else None,
        seconds=round((end - run["started_at"]).total_seconds(), 3) if end else None,
        inputs=inputs,
        epochs_completed=len(epochs) if epochs else len(reports),
        reports=len(reports),
        checkpoints=sum(1 for e in reports if e["checkpoint"]),
        worker_failures=failures, restarts=restarts, attempts=1 + restarts,
        resumes=sum(1 for e in run_events if e["kind"] == RK.RESUMED),
        recovery_events=sum(1 for e in input_events if e["kind"] in RECOVERY_KINDS),
        rebuilt=sum(1 for e in input_events if e["kind"] in REBUILDS),
        reconstructed=sum(1 for e in input_events if e["kind"] == K.OBJECT_RECONSTRUCTED),
        time_lost_s=time_lost(run_events),
        error=run["error"],
    )


def run_timeline(run_events: list[dict], input_events: list[dict]) -> list[TimelineEntry]:
    """The run's own events and its inputs' recovery events, in time order."""
    rows = [TimelineEntry(at=e["happened_at"], what=e["kind"], epoch=e["epoch"], conversion=None, partition=None,
                          detail=e["checkpoint"] or e["detail"] or "") for e in run_events]
    rows += [TimelineEntry(at=e["started_at"], what=e["kind"], epoch=None, conversion=e["conversion_id"],
                           partition=e["partition_id"], detail=e["detail"] or "")
             for e in input_events if e["kind"] in RECOVERY_KINDS]
    return sorted(rows, key=lambda r: r.at)


def run_record(con, run: dict) -> tuple[RunSummary, list[TimelineEntry]]:
    """(summary, timeline) of one training run."""
    inputs = queries.run_inputs(con, run["run_id"])
    events = queries.run_events(con, run["run_id"])
    data = queries.events_between(con, sorted(set(inputs.values())), run["started_at"], run["finished_at"])
    return summarize_run(run, inputs, events, data), run_timeline(events, data)


def runs_audit(con) -> list[RunSummary]:
    return [run_record(con, r)[0] for r in queries.runs(con)]
