"""Warming a new Spark session's conversion path in the background.

A session's first conversion used to wait, one after another, for Ray worker processes for
its read tasks, the rebuild service's actor and Ray Data's own actors (its statistics and
autoscaling coordinator, started on a driver's first Dataset execution): seconds on a small
machine. `init_spark` returns first; a daemon thread then starts them, so a conversion that
follows finds them up (or waits for the ones still starting, as it would have anyway).
Nothing here touches the user's catalog, data or Spark: a warm-up Spark job (the executors'
Arrow classes) was tried and dropped, because the user's own first Spark job queued behind it.
`FTBRIDGE_WARM_UP=false` turns it off.
"""

from __future__ import annotations

import logging
import threading
import time

import ray

from ftbridge.adapters import ray as ray_adapter
from ftbridge.cluster import session
from ftbridge.convert.read.task import prewarm_readers
from ftbridge_common.config import settings

log = logging.getLogger(__name__)

WARM_UP_TIMEOUT_S = 60.0
STOP_WAIT_S = 30.0


def _run(owner, registry, done: threading.Event, report: dict) -> None:
    t0 = time.monotonic()
    try:
        readers = prewarm_readers()
        registry.serve_session(owner)  # the rebuild service's actor, ended by the session's stop
        ds = ray.data.range(1, override_num_blocks=1)
        with ray_adapter.quiet_execution(ds):
            ds.materialize()  # Ray Data's own actors
        report["read_workers"] = len(set(ray.get(readers, timeout=WARM_UP_TIMEOUT_S)))
        report["ray_s"] = time.monotonic() - t0
    except Exception as exc:  # only time is lost: the first conversion starts what is missing
        report["ray_error"] = str(exc)
        log.debug("warm-up of the conversion path stopped: %s", exc)
    finally:
        log.debug("conversion path warmed up in %.2fs: %s", time.monotonic() - t0, report)
        done.set()


def warm_up(owner, registry) -> threading.Event | None:
    """Start the warm-up for the session `owner`; its stop waits (bounded) for the thread.

    Sets `owner.warm_up_done` (an Event, set when the thread ends) and `owner.warm_up_report`
    (what was started: read workers, seconds, errors).
    """
    if not settings().warm_up:
        return None
    done, report = threading.Event(), {}
    owner.warm_up_done, owner.warm_up_report = done, report

    def wait_on_stop(_cleanup_data: bool) -> None:
        # A Ray call racing ray.shutdown() can end the process: the thread finishes first.
        if not done.wait(STOP_WAIT_S):
            log.warning("the conversion warm-up did not finish within %.0fs of stop_spark", STOP_WAIT_S)

    owner.stop_hooks.insert(0, wait_on_stop)
    threading.Thread(target=_run, args=(owner, registry, done, report), name="ftbridge-warm-up", daemon=True).start()
    return done


def install(registry) -> None:
    """Warm every new session's conversion path (`registry`: the conversions' Registry)."""
    hook = lambda owner: warm_up(owner, registry)  # noqa: E731
    hook.__qualname__ = "warm_up"
    session.START_HOOKS.append(hook)
