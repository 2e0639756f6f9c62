"""Spark jobs with a time bound: a job that cannot finish is cancelled, not waited on forever."""

from __future__ import annotations

import threading
import uuid

from ftbridge_common import foreign


def run_bounded(sc, timeout_s: float, what: str, fn, **fields):
    """Run `fn()` (which starts Spark jobs) in its own job group; cancel the group after `timeout_s`.

    Raises ConversionTimeoutError (retryable) naming `what` when the bound is hit.
    """
    group = f"ftbridge-{uuid.uuid4().hex[:12]}"
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
        if fired.is_set():
            raise foreign.spark_job_timed_out(what, timeout_s, **fields) from exc
        raise
    finally:
        timer.cancel()
        try:
            sc.setLocalProperty("spark.jobGroup.id", None)
        except Exception:
            pass
