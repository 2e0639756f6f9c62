"""Warming a new Spark session's conversion path in the background.

A session's first conversion used to wait, one after another, for Ray worker processes for
its read tasks, the rebuild service's actor and Ray Data's own actors (its statistics and
autoscaling coordinator, started on a driver's first Dataset execution): seconds on a small
machine. `init_spark` returns first; a daemon thread then starts them, so a conversion that
follows finds them up (or waits for the ones still starting, as it would have anyway).
Nothing here touches the user's catalog, data or Spark: a warm-up Spark job (the executors'
Arrow classes) was tried and dropped, because the user's own first Spark job queued behind it.

Everything the warm-up runs asks Ray for no CPU (executors may hold every CPU: a task that
asked for one would wait for them), and `stop_spark` does not wait for it to finish: it tells
the thread to stop, which it does at its next step (each is bounded). `FTBRIDGE_WARM_UP=false`
turns it off.
"""

from __future__ import annotations

import logging
import threading
import time

import pyarrow as pa
import ray
from ray.data import Datasource

from ftbridge.adapters import ray as ray_adapter
from ftbridge.cluster import session
from ftbridge.common.config import settings
from ftbridge.convert.read.task import prewarm_readers

log = logging.getLogger(__name__)

WARM_UP_TIMEOUT_S = 60.0
POLL_S = 0.2
STOP_WAIT_S = 5.0  # a step in flight (one bounded Ray call) may take this long to return


def _one_row():
    yield pa.table({"warm": [0]})


class _Probe(Datasource):
    """One read task with one row: a Dataset execution that starts Ray Data's own actors and
    asks for no CPU (`ray.data.range` has no way to say so)."""

    def get_name(self) -> str:
        return "FtbridgeWarmUp"

    def estimate_inmemory_data_size(self) -> int:
        return 8

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context=None,
                       **_) -> list:
        return [ray_adapter.read_task(_one_row, num_rows=1, size_bytes=8, schema=pa.schema([("warm", pa.int64())]),
                                      per_task_row_limit=per_task_row_limit)]


def _wait(refs: list, stop: threading.Event) -> list:
    """`ray.get(refs)` in short steps, so a stop request ends the wait within POLL_S."""
    deadline = time.monotonic() + WARM_UP_TIMEOUT_S
    pending = list(refs)
    while pending:
        if stop.is_set():
            raise InterruptedError("stop_spark was called")
        if time.monotonic() > deadline:
            raise TimeoutError(f"read workers did not start within {WARM_UP_TIMEOUT_S:.0f}s")
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
    return ray.get(refs, timeout=WARM_UP_TIMEOUT_S)


def _run(owner, registry, done: threading.Event, stop: threading.Event, report: dict) -> None:
    t0 = time.monotonic()
    try:
        readers = prewarm_readers()
        if not stop.is_set():
            registry.serve_session(owner)  # the rebuild service's actor, ended by the session's stop
        if not stop.is_set():
            ds = ray_adapter.read_datasource(_Probe(), num_tasks=1, max_retries=0)
            with ray_adapter.quiet_execution(ds):
                ds.materialize()  # Ray Data's own actors
        report["read_workers"] = len(set(_wait(readers, stop)))
        report["ray_s"] = time.monotonic() - t0
    except Exception as exc:  # only time is lost: the first conversion starts what is missing
        report["ray_error"] = str(exc)
        log.debug("warm-up of the conversion path stopped: %s", exc)
    finally:
        log.debug("conversion path warmed up in %.2fs: %s", time.monotonic() - t0, report)
        done.set()


def warm_up(owner, registry) -> threading.Event | None:
    """Start the warm-up for the session `owner`; its stop asks the thread to end.

    Sets `owner.warm_up_done` (an Event, set when the thread ends) and `owner.warm_up_report`
    (what was started: read workers, seconds, errors).
    """
    if not settings().warm_up:
        return None
    done, stop = threading.Event(), threading.Event()
    report: dict = {}
    owner.warm_up_done, owner.warm_up_report = done, report

    def stop_on_stop(_cleanup_data: bool) -> None:
        # A Ray call racing ray.shutdown() can end the process: the thread ends its step first.
        stop.set()
        if not done.wait(STOP_WAIT_S):
            log.warning("the conversion warm-up did not end within %.0fs of stop_spark", STOP_WAIT_S)

    owner.stop_hooks.insert(0, stop_on_stop)
    threading.Thread(target=_run, args=(owner, registry, done, stop, report), name="ftbridge-warm-up",
                     daemon=True).start()
    return done


def install(registry) -> None:
    """Warm every new session's conversion path (`registry`: the conversions' Registry)."""
    def hook(owner) -> None:
        warm_up(owner, registry)

    hook.__qualname__ = "warm_up"
    session.START_HOOKS.append(hook)
