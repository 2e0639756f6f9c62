"""Read the process table: which Spark JVMs are alive. Used by tests and the chaos scenarios."""

from __future__ import annotations

import os
import time

from ftbridge.cluster.jvm import cmdline
from ftbridge.cluster.reaper import pid_alive

SPARK_MARKERS = ("org.apache.spark.deploy.master.Master", "org.apache.spark.deploy.worker.Worker",
                 "CoarseGrainedExecutorBackend")


def spark_daemon_jvms() -> dict[int, str]:
    """pid -> role for every live Spark master, worker or executor JVM on this machine."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        args = " ".join(cmdline(int(entry)))
        for marker in SPARK_MARKERS:
            if marker in args and "java" in args:
                found[int(entry)] = marker.rsplit(".", 1)[-1]
    return found


def wait_gone(pids, timeout_s: float = 30.0) -> set[int]:
    """Wait until every pid has exited; return those still alive after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    alive = {p for p in pids if p}
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if pid_alive(p)}
        if alive:
            time.sleep(0.2)
    return alive
