"""Fault injectors. Every fault is real (signals, node removal, bytes on disk) and recorded.

Modelled on Ray's own `ResourceKillerActor` family: kill real processes at random times
within an interval, up to a maximum, from a seeded schedule, and record what was done so a
report and the catalog can be compared afterwards.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field

import ray

import ftbridge
from ftbridge.chaos.proctable import descendants, wait_gone


@dataclass
class Fault:
    """One injected fault."""

    kind: str
    target: str
    at: float = field(default_factory=time.time)
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class FaultLog:
    """What was injected, in order. Thread-safe."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, kind: str, target: str, **detail) -> Fault:
        fault = Fault(kind, target, detail=detail)
        with self._lock:
            self.faults.append(fault)
        return fault

    def to_list(self) -> list[dict]:
        with self._lock:
            return [f.to_dict() for f in self.faults]


def kill_executor(log: FaultLog, rng: random.Random, check_jvm: bool = True) -> Fault:
    """SIGKILL a random executor actor's process; check its JVMs die with it."""

    live = [e for e in ftbridge.executors() if e.jvm_pid]
    if not live:
        raise RuntimeError("no live executor to kill")
    victim = rng.choice(live)
    os.kill(victim.actor_pid, signal.SIGKILL)
    fault = log.add("executor_killed", victim.actor_name, actor_pid=victim.actor_pid, jvm_pid=victim.jvm_pid,
                    node_id=victim.node_id, executor_id=victim.executor_id)
    if check_jvm:
        left = wait_gone([victim.jvm_pid, victim.worker_jvm_pid], timeout_s=30)
        fault.detail["jvms_left"] = sorted(left)
    return fault


def remove_node(cluster, node, log: FaultLog, wipe_spill: bool, spill_root: str | None = None) -> Fault:
    """Remove a worker node of a ray.cluster_utils.Cluster; optionally wipe its local spill dir.

    A host that dies takes every process with it: what Ray started on the node (its raylet's
    descendants) and still runs once Ray has removed the node is SIGKILLed. A Ray worker can
    outlive its raylet (seen: a Ray Train controller, orphaned, that never exited).
    """
    node_id = node.node_id
    raylet = node.all_processes["raylet"][0].process.pid
    on_node = descendants(raylet)
    cluster.remove_node(node)
    for pid in wait_gone(on_node, timeout_s=5):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wiped = None
    if wipe_spill and spill_root:
        wiped = os.path.join(spill_root, node_id)
        shutil.rmtree(wiped, ignore_errors=True)
    return log.add("node_removed", node_id, spill_wiped=wiped)


def corrupt_spill(path: str, mode: str, rng: random.Random, log: FaultLog) -> Fault:
    """delete | truncate | flip bytes of one spill file."""
    size = os.path.getsize(path)
    if mode == "delete":
        os.remove(path)
    elif mode == "truncate":
        with open(path, "r+b") as f:
            f.truncate(rng.randrange(0, max(1, size)))
    elif mode == "flip":
        with open(path, "r+b") as f:
            for _ in range(8):
                offset = rng.randrange(0, size)
                f.seek(offset)
                byte = f.read(1)
                f.seek(offset)
                f.write(bytes([byte[0] ^ 0xFF]))
    else:
        raise ValueError(f"unknown corruption mode {mode!r}")
    return log.add("spill_corrupted", path, mode=mode, size=size)


def pause_executor(log: FaultLog, rng: random.Random, seconds: float) -> Fault:
    """SIGSTOP an executor JVM for `seconds` (beyond Spark's heartbeat timeout), then SIGCONT."""

    victim = rng.choice([e for e in ftbridge.executors() if e.jvm_pid])
    os.kill(victim.jvm_pid, signal.SIGSTOP)
    fault = log.add("executor_paused", victim.actor_name, jvm_pid=victim.jvm_pid, seconds=seconds)
    time.sleep(seconds)
    try:
        os.kill(victim.jvm_pid, signal.SIGCONT)
    except ProcessLookupError:
        fault.detail["died_while_paused"] = True
    return fault


def kill_catalog_writer(writer, log: FaultLog) -> Fault:
    """SIGKILL the catalog writer actor's process (Ray restarts it)."""
    pid = ray.get(writer.pid.remote(), timeout=30)
    os.kill(pid, signal.SIGKILL)
    return log.add("catalog_writer_killed", f"pid {pid}", pid=pid)


class ResourceKiller:
    """Kill at random times within [min_gap_s, max_gap_s], up to `max_kills`, in a thread.

    `action(rng)` performs one kill and returns a Fault; the schedule comes from the seed.
    """

    def __init__(self, action, seed: int, max_kills: int, min_gap_s: float, max_gap_s: float) -> None:
        self.action, self.rng = action, random.Random(seed)
        self.max_kills, self.min_gap_s, self.max_gap_s = max_kills, min_gap_s, max_gap_s
        self.killed: list[Fault] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-killer", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=120)

    def require_kills(self, n: int = 1) -> None:
        """FaultMissedError unless at least `n` kills landed (with the errors of those that did not)."""
        if len(self.killed) < n:
            raise FaultMissedError(f"{len(self.killed)} of the {n} kills needed landed while the work ran; "
                                   f"kill errors: {self.errors or 'none'}")

    def _run(self) -> None:
        while len(self.killed) < self.max_kills and not self._stop.wait(
                self.rng.uniform(self.min_gap_s, self.max_gap_s)):
            try:
                self.killed.append(self.action(self.rng))
            except Exception as exc:  # recorded: a kill that could not happen is part of the report
                self.errors.append(str(exc))


def when(predicate, timeout_s: float, poll_s: float = 0.05) -> bool:
    """Wait for an engine event (e.g. 'k spill files exist'); False on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False


class FaultMissedError(AssertionError):
    """A scenario could not show that its fault landed while the work ran: it proves nothing."""


def await_moment(predicate, timeout_s: float, what: str) -> None:
    """`when`, or FaultMissedError naming the moment that never came."""
    if not when(predicate, timeout_s):
        raise FaultMissedError(f"{what} did not happen within {timeout_s:.0f}s, so no fault was injected")


def require_running(thread: threading.Thread, fault: str) -> None:
    """FaultMissedError unless the work in `thread` was still running when `fault` landed."""
    if not thread.is_alive():
        raise FaultMissedError(f"the work had finished before {fault}: the fault did not land while it ran")


def spill_files(root: str, conversion_id: str | None = None) -> list[str]:
    """Final spill files under a root (temp files excluded), optionally of one conversion."""
    out = []
    for dirpath, _, files in os.walk(root):
        if conversion_id and os.path.basename(dirpath) != conversion_id:
            continue
        out += [os.path.join(dirpath, f) for f in files if f.endswith(".arrow")]
    return out
