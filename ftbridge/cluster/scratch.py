"""Where the JVMs ftbridge starts keep their temp files and logs, and who removes them.

Everything lives under one private root, `$TMPDIR/ftbridge-$UID` (0700):

- `driver-<pid>/`: the driver JVM's `java.io.tmpdir` and `spark.local.dir` (Spark's
  `spark-*`/`blockmgr-*` folders, the native libraries lz4 and snappy extract). The driver JVM
  lives as long as its Python process, so a reaper removes the folder once both are gone,
  also after SIGKILL.
- `spark/{master,worker}/<name>-*/`: a master's or an executor actor's JVM work folder, with its
  own `tmp/` (java.io.tmpdir and TMPDIR of the worker, its executor and Python workers) and
  `local/` (the executor's `spark.local.dir`); removed by that JVM group's reaper.
- `logs/<time>-<pid>/`: the driver JVM's output (Spark's log lines) and a link to Ray's
  session logs. Kept on purpose, the newest `FTBRIDGE_LOG_KEEP` of them.

Whoever starts Spark next sweeps what a removed node's reapers could not (`sweep`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time

from ftbridge.cluster.reaper import (
    driver_marker,
    end_processes,
    pid_alive,
    processes_with,
    remove_empty,
    spawn,
    start_ticks,
)
from ftbridge.common.config import settings

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_STATE: dict[str, object] = {}
OWNER_FILE = ".owner"


def root() -> str:
    """The private per-user root of everything ftbridge keeps in the temp dir."""
    path = os.path.join(tempfile.gettempdir(), f"ftbridge-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def make_owned_dir(parent: str, prefix: str) -> str:
    """A fresh folder under `parent` stamped with this process as its owner."""
    for _ in range(3):  # a concurrent sweep may remove an empty parent between the two calls
        os.makedirs(parent, mode=0o700, exist_ok=True)
        try:
            path = tempfile.mkdtemp(prefix=prefix, dir=parent)
            break
        except FileNotFoundError:
            continue
    else:
        path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    _stamp_owner(path)
    return path


def _stamp_owner(path: str) -> None:
    """Name this process as the folder's owner (what `sweep` checks): its pid, and what tells it
    from a later process with the same pid (its start time since boot, and the boot)."""
    with open(os.path.join(path, OWNER_FILE), "w") as f:
        f.write(_identity(os.getpid()))


def _identity(pid: int) -> str:
    """`pid start-ticks boot-id` ("pid" alone where /proc cannot tell)."""
    ticks = start_ticks(pid)
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        return str(pid)
    return f"{pid} {ticks} {boot}" if ticks else str(pid)


def driver_dir() -> str:
    """This process's driver-JVM temp folder (created once per process)."""
    with _LOCK:
        path = _STATE.get("driver_dir")
        if path is None or not os.path.isdir(str(path)):
            path = os.path.join(root(), f"driver-{os.getpid()}")
            for sub in ("tmp", "local"):
                os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
            _stamp_owner(path)
            _STATE["driver_dir"] = path
        return str(path)


def log_dir() -> str:
    """This process's log folder (created once per process); older ones beyond the keep count go."""
    with _LOCK:
        path = _STATE.get("log_dir")
        if path is None or not os.path.isdir(str(path)):
            base = settings().log_root
            os.makedirs(base, mode=0o700, exist_ok=True)
            path = os.path.join(base, f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            os.makedirs(path, mode=0o700, exist_ok=True)
            _prune_logs(base, settings().log_keep)
            _STATE["log_dir"] = path
        return str(path)


def _prune_logs(base: str, keep: int) -> None:
    entries = sorted((e for e in os.scandir(base) if e.is_dir(follow_symlinks=False)),
                     key=lambda e: e.stat(follow_symlinks=False).st_mtime)
    for entry in entries[:-keep]:  # keep >= 1 (checked by settings)
        shutil.rmtree(entry.path, ignore_errors=True)


def watch_driver_jvm() -> None:
    """Start the reaper that ends this process's driver JVM and removes its folder once the process is gone.

    Started before the JVM: a driver killed while PySpark starts it leaves a JVM that runs on.
    """
    work_dir = driver_dir()
    with _LOCK:
        if _STATE.get("driver_reaper") is not None:
            return
        _STATE["driver_reaper"] = spawn(["--driver", str(os.getpid()), work_dir])


def kill_unstarted_driver_jvm() -> list[int]:
    """SIGKILL a driver JVM of this process that never handed PySpark its gateway; return the pids ended."""
    pids = processes_with(driver_marker(driver_dir()))
    end_processes(pids, grace_s=0.0)
    return pids


def _owner_alive(path: str, grace_s: float) -> bool:
    try:
        with open(os.path.join(path, OWNER_FILE)) as f:
            owner = f.read().split()
        pid = int(owner[0]) if owner else 0
        # A host that rebooted (or a PID namespace started again) reuses small pids: the same
        # pid is the owner only if it is the same process.
        return pid_alive(pid) and (len(owner) < 3 or _identity(pid) == " ".join(owner))
    except (OSError, ValueError):
        try:
            return time.time() - os.path.getmtime(path) < grace_s
        except OSError:
            return False


def sweep(grace_s: float = 60.0) -> list[str]:
    """Remove this node's JVM folders whose owning process is dead; return what went.

    A reaper removes its folder once its JVMs are gone, but when Ray kills a whole node's
    process tree (node removal) the reaper dies too.
    """
    base = root()
    candidates = [os.path.join(base, n) for n in os.listdir(base) if n.startswith("driver-")]
    for kind in ("master", "worker"):
        kind_root = os.path.join(base, "spark", kind)
        if os.path.isdir(kind_root):
            candidates += [os.path.join(kind_root, n) for n in os.listdir(kind_root)]
    removed = []
    for path in candidates:
        if os.path.basename(path) == f"driver-{os.getpid()}" or _owner_alive(path, grace_s):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    for kind in ("master", "worker"):
        remove_empty(os.path.join(base, "spark", kind), stop_at=base)
    return removed


def link_ray_logs(ray_logs: str | None) -> None:
    """A `ray` link in this process's log folder to the Ray session's own logs."""
    if not ray_logs:
        return
    link = os.path.join(log_dir(), "ray")
    try:
        if os.path.islink(link):
            os.remove(link)
        os.symlink(ray_logs, link)
    except OSError as exc:
        log.debug("could not link Ray's logs into %s: %s", link, exc)
