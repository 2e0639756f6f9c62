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


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _address(hex_addr: str) -> str:
    ip, port = hex_addr.split(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        return f"{'.'.join(str(b) for b in raw[::-1])}:{int(port, 16)}"
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]  # four little-endian 32-bit words
    v6 = b"".join(words)
    if v6[:12] == b"\0" * 10 + b"\xff\xff":  # IPv4-mapped
        return f"{'.'.join(str(b) for b in v6[12:])}:{int(port, 16)}"
    if v6 == b"\0" * 16:
        return f":::{int(port, 16)}"
    return f"[{v6.hex()}]:{int(port, 16)}"


def listening(pid: int) -> set[str]:
    """'ip:port' of every TCP socket `pid` listens on (':::port' for the IPv6 wildcard)."""
    inodes = _socket_inodes(pid)
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(_address(fields[1]))
    return found
