"""Spark on Ray: start a standalone master and executor actors, connect a SparkSession.

The module keeps a pointer to the current `SparkOnRay` (see `spark_on_ray.py`) so that
`stop_spark()` and `executors()` can find it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ftbridge.adapters import ray as ray_adapter
from ftbridge.cluster.config import ClusterConfig
from ftbridge.cluster.spark_on_ray import ExecutorInfo, SparkOnRay, ensure_ray
from ftbridge.common.errors import ClusterStartTimeoutError, SparkAlreadyRunningError, SparkNotRunningError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["ExecutorInfo", "current", "current_or_none", "ensure_ray", "executors", "init_spark", "spark_session",
           "stop_spark", "wait_for_executors"]

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_CURRENT: SparkOnRay | None = None
# Called with each new session once it is up (the conversion layer warms its read path here).
START_HOOKS: list[Callable[[SparkOnRay], None]] = []


def init_spark(app_name: str, num_executors: int, executor_cores: int, executor_memory: str,
               configs: dict | None = None, placement_group_strategy: str | None = None,
               **kwargs: Any) -> SparkSession:
    """Start Spark on Ray and return its SparkSession.

    Args:
        app_name: Spark application name.
        num_executors: number of executors; each lives in its own Ray actor.
        executor_cores: Ray CPUs (and Spark task slots) per executor.
        executor_memory: Spark executor heap, e.g. "1GB"; Ray memory is reserved for it.
        configs: extra Spark configuration.
        placement_group_strategy: None, or "PACK"/"SPREAD"/"STRICT_PACK"/"STRICT_SPREAD".
        **kwargs: see ClusterConfig: executor_cpus (Ray CPUs per executor actor, fractions
            allowed; default executor_cores), executor_gpus, executor_resources,
            placement_group + placement_group_bundle_indexes (an existing group),
            start_timeout_s, max_executor_restarts, master_port; min_executors/max_executors
            (dynamic allocation: executor actors follow Spark's demand between them,
            num_executors is the initial count and may be 0); encrypt=True (Spark RPC
            encrypted; it is always authenticated with the session's own secret, or with
            configs["spark.authenticate.secret"] when given).

    Returns:
        A SparkSession whose executors run inside Ray actors.
    """
    global _CURRENT
    with _LOCK:
        if _CURRENT is not None:
            raise SparkAlreadyRunningError(
                f"Spark on Ray is already running (app {_CURRENT.cfg.app_name!r}); call ftbridge.stop_spark() "
                "first, or use ftbridge.spark_session() to get the running session.")
        cfg = ClusterConfig(app_name, num_executors, executor_cores, executor_memory, configs or {},
                            placement_group_strategy, **kwargs)
        _CURRENT = SparkOnRay(cfg)
        ray_adapter.before_shutdown(_stop_before_ray_shutdown)
        for hook in list(START_HOOKS):
            try:
                hook(_CURRENT)
            except Exception:  # a start hook only saves time later; the session is up
                log.exception("start hook %r failed", hook)
        return _CURRENT.spark


def _stop_before_ray_shutdown() -> None:
    """`ray.shutdown()` with the session up: Spark's executors live in Ray actors and the driver's
    threads poll Ray, so the session stops first, while Ray is still up, as `stop_spark()` would
    (a later `stop_spark()` has nothing left to do). Without this, a Ray call of one of those
    threads during the shutdown, or of `stop_spark()` after it, ends the process."""
    if _CURRENT is not None:
        log.info("ray.shutdown() with Spark on Ray up: stopping Spark first")
        stop_spark()


def current() -> SparkOnRay:
    if _CURRENT is None:
        raise SparkNotRunningError("Spark on Ray is not running; call ftbridge.init_spark(...) first.")
    return _CURRENT


def current_or_none() -> SparkOnRay | None:
    return _CURRENT


def spark_session():
    """The running SparkSession."""
    return current().spark


def executors() -> list[ExecutorInfo]:
    """Live executors: actor name and pid, JVM pid, Ray node id, Spark executor id."""
    return current().executors()


def wait_for_executors(n: int, timeout_s: float = 120.0) -> list[ExecutorInfo]:
    """Wait until `n` executors have a live JVM (e.g. after Ray restarted killed ones).

    Raises:
        ClusterStartTimeoutError: fewer came back within `timeout_s`.
    """
    deadline = time.monotonic() + timeout_s
    live: list[ExecutorInfo] = []
    while time.monotonic() < deadline:
        live = [e for e in executors() if e.jvm_pid]
        if len(live) >= n:
            return live
        time.sleep(0.5)
    raise ClusterStartTimeoutError(f"only {len(live)} of {n} executors have a live JVM after {timeout_s:.0f}s; "
                                   "see `ray status` and the executor actors' logs.")


def stop_spark(cleanup_data: bool = True) -> None:
    """Stop Spark and its actors. Ray keeps running.

    Args:
        cleanup_data: delete this session's spill files and mark its conversions released;
            False keeps them so Datasets stay readable after Spark is gone.
    """
    global _CURRENT
    with _LOCK:
        if _CURRENT is None:
            return
        try:
            _CURRENT.stop(cleanup_data)
        finally:
            _CURRENT = None
