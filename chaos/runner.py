"""Run scenarios with seeds, classify outcomes, print a table, write a JSON report."""

from __future__ import annotations

import json
import threading
import time

from ftbridge.chaos.faults import FaultLog
from ftbridge.chaos.matrix import SCENARIOS
from ftbridge.chaos.scenarios import Outcome
from ftbridge.errors import PartitionLostError

SCENARIO_TIMEOUT_S = 420


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
        out.outcome = "recovered"
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
