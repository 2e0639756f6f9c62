"""Run scenarios with seeds, classify outcomes, print a table, write a JSON report."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta

from ftbridge.chaos.faults import FaultLog
from ftbridge.chaos.matrix import SCENARIOS
from ftbridge.chaos.scenarios import Outcome
from ftbridge.errors import PartitionLostError
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.kinds import EventKind
from ftbridge.lineage.writer import flush

SCENARIO_TIMEOUT_S = 420
DETECTED = (EventKind.SPILL_MISSING, EventKind.CHECKSUM_MISMATCH)
ANSWERED = (EventKind.REBUILT_FROM_SPARK, EventKind.REBUILT_FROM_RECIPE, EventKind.REBUILT_FROM_RAY,
            EventKind.REBUILD_REFUSED, EventKind.UNRECOVERABLE)


def audit_gaps(catalog: str, faults: list[dict]) -> list[str]:
    """The injected faults the catalog does not account for: a corrupted or deleted spill file
    that was read again must show its detection (missing or checksum mismatch, naming the file)
    and, after it, the rebuild (or the refusal, or the loss) of that partition. Flush the
    catalog's writer first: read events are buffered."""
    corrupted = [f for f in faults if f["kind"] == "spill_corrupted"]
    if not corrupted or not os.path.exists(catalog):
        return []
    with Catalog(catalog).read() as con:
        events = queries.events(con)
    gaps = []
    for fault in corrupted:
        since = datetime.fromtimestamp(fault["at"], UTC) - timedelta(seconds=1)
        detected = [e for e in events if e["kind"] in DETECTED and e["started_at"] >= since
                    and (e["detail"] or "").startswith(fault["target"])]
        if not detected:
            gaps.append(f"{fault['target']} ({fault['detail'].get('mode')}): no detection event in the catalog")
            continue
        first = detected[0]
        if not any(e["kind"] in ANSWERED and (e["conversion_id"], e["partition_id"]) ==
                   (first["conversion_id"], first["partition_id"]) and e["finished_at"] >= first["started_at"]
                   for e in events):
            gaps.append(f"{fault['target']}: detected ({first['kind']}) but no rebuild, refusal or loss recorded")
    return gaps


def run_one(env, name: str, seed: int, timeout_s: float = SCENARIO_TIMEOUT_S) -> Outcome:
    """Run one scenario in a thread bounded by `timeout_s`; never raises."""
    out = Outcome(scenario=name, seed=seed)
    out.log = FaultLog()
    box = {}

    def body():
        try:
            SCENARIOS[name](env, seed, out)
        except BaseException as exc:  # classified below: every failure is an outcome
            box["error"] = exc

    thread = threading.Thread(target=body, name=f"chaos-{name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    out.faults = out.log.to_list()
    if not thread.is_alive():
        env.replenish()
    if thread.is_alive():
        out.outcome, out.detail = "hang", f"not finished after {timeout_s:.0f}s"
    elif "error" in box:
        exc = box["error"]
        if isinstance(exc, PartitionLostError) or isinstance(getattr(exc, "cause", None), PartitionLostError):
            out.outcome = "clean_error"
        else:
            out.outcome = "error"
        out.detail = f"{type(exc).__name__}: {str(exc)[:500]}"
    elif not out.checks:
        out.outcome, out.detail = "error", "the scenario checked nothing"
    elif all(c.ok for c in out.checks):
        if os.path.exists(env.catalog):
            flush(Catalog(env.catalog))
        gaps = audit_gaps(env.catalog, out.faults)
        out.outcome = "audit_gap" if gaps else "recovered"
        if gaps:
            out.detail = "the catalog misses events of injected faults: " + "; ".join(gaps)
    else:
        out.outcome = "wrong_data"
        out.detail = out.detail or "; ".join(str(c) for c in out.checks if not c.ok)
    return out


def run(env, names: list[str], seeds: list[int], on_result=None) -> list[Outcome]:
    results = []
    for name in names:
        for seed in seeds:
            t0 = time.monotonic()
            result = run_one(env, name, seed)
            result.wall_seconds = round(time.monotonic() - t0, 1)
            results.append(result)
            if on_result:
                on_result(result)
    return results


def report(results: list[Outcome], path: str | None) -> dict:
    doc = {"scenarios": [r.to_dict() for r in results]}
    if path:
        with open(path, "w") as f:
            json.dump(doc, f, indent=2, default=str)
    return doc
