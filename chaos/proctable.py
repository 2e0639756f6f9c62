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


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def descendants(pid: int) -> dict[int, str]:
    """pid -> command line of every live process below `pid` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _ppid(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    found, todo = {}, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if child not in found:
            found[child] = " ".join(cmdline(child))
            todo.extend(children.get(child, []))
    return found


def ray_processes(procs: dict[int, str]) -> set[int]:
    """The Ray processes among `procs` (raylet, GCS, Ray's helpers and `ray::` workers)."""
    return {pid for pid, args in procs.items()
            if "ray" in args and "java" not in args and "ftbridge.cluster.reaper" not in args}
