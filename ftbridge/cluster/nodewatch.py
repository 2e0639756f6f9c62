"""Telling Spark at once what Ray knows: an executor whose node Ray declared dead is removed.

A host that crashes resets its TCP connections, and Spark notices within a second. A host that
stops answering (a network partition, a hung kernel) sends nothing: Spark keeps its executors,
keeps asking their block managers for cached blocks, and gives up only at its own network
timeout, which stalled every rebuild by up to two minutes. Ray's health checks declare such a
node dead; this watcher then tells Spark's driver that the executors on it are lost (the
adapter's `remove_executors`), so retries and rebuilds go to live executors right away.
"""

from __future__ import annotations

import logging
import threading
import time

import ray

from ftbridge.adapters.spark import remove_executors

log = logging.getLogger(__name__)


def wait_pinned(pinned: dict, timeout_s: float, poll_s: float = 1.0) -> tuple[list, list, list]:
    """Wait for tasks pinned to nodes ({ref: node id}) until each is done, its node is dead, or
    `timeout_s` passes: (done, node died, timed out). A host cut off from the network never
    answers, and Ray may not fail a task already leased there when it declares the node dead,
    so the wait ends for such a task as soon as its node is dead, not at the bound."""
    done, died, pending = [], [], list(pinned)
    deadline = time.monotonic() + timeout_s
    while pending:
        ready, pending = ray.wait(pending, num_returns=len(pending),
                                  timeout=min(poll_s, max(0.0, deadline - time.monotonic())))
        done += ready
        if not pending or time.monotonic() >= deadline:
            break
        alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        died += [ref for ref in pending if pinned[ref] not in alive]
        pending = [ref for ref in pending if pinned[ref] in alive]
    return done, died, pending


class DeadNodeWatcher:
    """A driver thread: polls Ray's node table; removes the executors of nodes that died."""

    POLL_S = 1.0
    MAP_EVERY_S = 5.0  # how often each executor actor is asked which Spark executor it runs

    def __init__(self, session) -> None:
        self.session = session
        self._where: dict[str, str] = {}  # Spark executor id -> Ray node id
        self._dead: set[str] = set()
        self._mapped_at = 0.0
        self.removed: list[tuple[str, str]] = []  # (executor id, node id) told to Spark, for operators and tests
        self.removed_at: float | None = None      # when Spark was last told (time.time())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ftbridge-node-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        first = True
        while not self._stop.wait(0 if first else self.POLL_S):
            if not ray.is_initialized():  # a Ray call after ray.shutdown() ends the process
                return
            try:
                self.step(initial=first)
            except Exception as exc:  # one bad poll must not end the watch
                if not self._stop.is_set():
                    log.debug("node watch: %s", exc)
            first = False

    def _map(self) -> None:
        with self.session._actors_lock:
            actors = list(self.session.executor_actors)
        refs = [a.info.remote() for a in actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=2)
        for ref in ready:
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError:
                continue
            if info.get("executor_id") is not None:
                self._where[str(info["executor_id"])] = info["node_id"]
        self._mapped_at = time.monotonic()

    def step(self, initial: bool = False) -> None:
        spark = self.session.spark
        if spark is None:
            return
        if time.monotonic() - self._mapped_at >= self.MAP_EVERY_S:
            self._map()
        dead = {n["NodeID"] for n in ray.nodes() if not n.get("Alive")}
        new, self._dead = dead - self._dead, self._dead | dead
        if initial or not new:
            return
        lost = [e for e, node in self._where.items() if node in new]
        if not lost:
            return
        told = remove_executors(spark.sparkContext, lost, "its Ray node was declared dead")
        for executor_id in lost:
            node = self._where.pop(executor_id)
            if executor_id in told:
                self.removed.append((executor_id, node))
        if told:
            self.removed_at = time.time()
            log.warning("Ray declared node(s) %s dead: removed Spark executor(s) %s so that retries and rebuilds "
                        "go to live executors", ", ".join(sorted(new)), ", ".join(told))
