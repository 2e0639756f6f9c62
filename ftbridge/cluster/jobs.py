"""Spark jobs with a time bound: a job that cannot finish is cancelled, not waited on forever."""

from __future__ import annotations

import threading
import time
import uuid

from ftbridge.common import foreign


def new_group() -> str:
    """A fresh Spark job group name."""
    return f"ftbridge-{uuid.uuid4().hex[:12]}"


def run_bounded(sc, timeout_s: float, what: str, fn, group: str | None = None, **fields):
    """Run `fn()` (which starts Spark jobs) in its own job group (`group`, default a new name);
    cancel the group after `timeout_s`.

    When the jobs fail, their tasks still running are killed and waited for (bounded), so no
    straggler writes a file after the caller has cleaned up.

    Raises ConversionTimeoutError (retryable) naming `what` when the bound is hit.
    """
    group = group or new_group()
    fired = threading.Event()

    def cancel():
        fired.set()
        try:
            sc.cancelJobGroup(group)
        except Exception:  # the context may already be stopping
            pass

    timer = threading.Timer(timeout_s, cancel)
    timer.daemon = True
    sc.setJobGroup(group, what, interruptOnCancel=True)
    timer.start()
    try:
        return fn()
    except Exception as exc:
        _settle(sc, group)
        if fired.is_set():
            raise foreign.spark_job_timed_out(what, timeout_s, **fields) from exc
        raise
    finally:
        timer.cancel()
        try:
            sc.setLocalProperty("spark.jobGroup.id", None)
        except Exception:
            pass


def _settle(sc, group: str, timeout_s: float = 30.0) -> None:
    """Cancel what is left of `group` and wait until none of its stages has a running task."""
    try:
        sc.cancelJobGroup(group)
        tracker = sc.statusTracker()
        jobs = [tracker.getJobInfo(jid) for jid in tracker.getJobIdsForGroup(group)]
        stages = [sid for job in jobs if job is not None for sid in job.stageIds]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            infos = [tracker.getStageInfo(sid) for sid in stages]
            if all(info is None or info.numActiveTasks == 0 for info in infos):
                return
            time.sleep(0.2)
    except Exception:  # the context may be stopping; cleanup is best effort
        pass
