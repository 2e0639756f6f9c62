"""Rebuild requests from read tasks to the Spark driver.

Read tasks run in Ray workers; the SparkSession lives in the driver process. A named async
actor (`RebuildService`, no CPU) takes requests from read tasks and parks them; a thread
in the driver long-polls it, runs the rebuild through Spark, and posts the result back.
Concurrent requests for one partition share one rebuild. When the driver or Spark stops,
the service fails every parked request at once, so readers never wait out a timeout.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftbridge.common import foreign
from ftbridge.common.config import RAY_NAMESPACE, settings
from ftbridge.common.errors import FtbridgeError, PartitionLostError
from ftbridge.convert.partition import PartitionRef, ReadContext

log = logging.getLogger(__name__)

POLL_S = 1.0


class RebuildService:
    """Parks rebuild requests until the driver answers them."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.futures: dict[tuple[str, int], asyncio.Future] = {}
        self.closed_why: str | None = None

    async def request(self, conversion_id: str, partition_id: int, why: str, failed_path: str = "") -> dict:
        if self.closed_why:
            raise PartitionLostError(conversion_id=conversion_id, partition=partition_id, node_id=None,
                                     cause=f"{why}; {self.closed_why}")
        key = (conversion_id, int(partition_id))
        fut = self.futures.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self.futures[key] = fut
            await self.queue.put((key, why, failed_path))
        return await asyncio.shield(fut)

    async def next(self, timeout_s: float) -> list:
        try:
            first = await asyncio.wait_for(self.queue.get(), timeout_s)
        except TimeoutError:
            return []
        items = [first]
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items

    async def complete(self, conversion_id: str, partition_id: int, result: dict | None, error=None) -> None:
        fut = self.futures.pop((conversion_id, int(partition_id)), None)
        if fut is not None and not fut.done():
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)

    async def close(self, why: str) -> None:
        self.closed_why = why
        for (conv, pid), fut in list(self.futures.items()):
            if not fut.done():
                fut.set_exception(PartitionLostError(conversion_id=conv, partition=pid, node_id=None, cause=why))
        self.futures.clear()


def _stop_at_exit(ref) -> None:
    dispatcher = ref()
    if dispatcher is not None:
        dispatcher.stop("the driver is exiting")


class RebuildDispatcher:
    """Driver side: owns the service actor and a thread that serves its requests."""

    def __init__(self) -> None:
        self.name = f"ftbridge-rebuild-{uuid.uuid4().hex[:12]}"
        # On the driver's node: it must not die with some other node, and it is useless without the driver.
        # A Ray actor handle: its methods are typed by Ray only as `.remote` callables.
        self.actor: Any = cast(Any, ray.remote(RebuildService).options(
            name=self.name, namespace=RAY_NAMESPACE, num_cpus=0, max_concurrency=1000, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
        ).remote())
        ray.get(self.actor.__ray_ready__.remote(), timeout=60)
        self.handlers: dict[str, Callable[[int, str, str], dict]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ftbridge-rebuild", daemon=True)
        self._thread.start()
        # Registered after ray.init's own exit hook, so it runs first: the polling thread ends
        # while Ray is still up (a Ray call after shutdown ends the whole process).
        atexit.register(_stop_at_exit, weakref.ref(self))

    def register(self, conversion_id: str, handler: Callable[[int, str, str], dict]) -> None:
        self.handlers[conversion_id] = handler

    def unregister(self, conversion_id: str) -> None:
        self.handlers.pop(conversion_id, None)

    def _serve(self) -> None:
        while not self._stop.is_set():  # each poll is bounded; stop() ends the loop
            # After ray.shutdown() any Ray call from this thread makes Ray's core worker end
            # the whole process ("The core worker has already been shutdown"): stop first.
            if not ray.is_initialized():
                return
            try:
                items = ray.get(self.actor.next.remote(POLL_S), timeout=POLL_S + 30)
            except Exception as exc:
                if not self._stop.is_set():
                    log.warning("rebuild service poll failed: %s", exc)
                    self._stop.wait(1.0)
                continue
            for (conv, pid), why, failed_path in items:
                self._handle(conv, pid, why, failed_path)

    def _handle(self, conv: str, pid: int, why: str, failed_path: str = "") -> None:
        handler = self.handlers.get(conv)
        result: dict | None = None
        error: FtbridgeError | None = None
        if handler is None:
            error = PartitionLostError(conversion_id=conv, partition=pid, node_id=None,
                                       cause=f"{why}; its Spark DataFrame is no longer registered (released?)")
        else:
            try:
                result = handler(pid, why, failed_path)
            except Exception as exc:  # Py4J and Spark errors become one clear error for the reader
                error = foreign.rebuild_failed(exc, conv, pid, why)
                if error is not exc:
                    log.exception("rebuild of %s/%d failed", conv, pid)
        try:
            ray.get(self.actor.complete.remote(conv, pid, result, error), timeout=30)
        except Exception as exc:
            log.warning("could not deliver rebuild result for %s/%d: %s", conv, pid, exc)

    def stop(self, why: str = "the Spark session that could rebuild it has stopped") -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            ray.get(self.actor.close.remote(why), timeout=10)
        except Exception:
            pass
        self._thread.join(timeout=POLL_S + 35)
        try:
            ray.kill(self.actor)
        except Exception:
            pass


def request_rebuild(ref: PartitionRef, ctx: ReadContext, why: str) -> tuple[PartitionRef, bool]:
    """From a read task: ask the driver to rebuild `ref`, wait (bounded); return the new file's ref
    and whether it is a file rebuilt earlier (no new rebuild: `ref` was an older path)."""
    here = ray.get_runtime_context().get_node_id()
    if ctx.rebuild_service is None:
        raise PartitionLostError(conversion_id=ref.conversion_id, partition=ref.partition_id, node_id=ref.node_id,
                                 cause=f"{why}; no Spark session or recipe is registered to rebuild it")
    timeout_s = settings().rebuild_timeout_s
    try:
        service = ray.get_actor(ctx.rebuild_service, namespace=RAY_NAMESPACE)
        meta: dict = cast(dict, ray.get(service.request.remote(ref.conversion_id, ref.partition_id, why, ref.path), timeout=timeout_s))
    except Exception as exc:  # no service (Spark stopped), timeout, its error, or it died
        raise foreign.rebuild_wait_failed(exc, ref.conversion_id, ref.partition_id, ref.node_id, why,
                                          timeout_s) from exc
    reused = bool(meta.get("reused"))
    log.info("partition %d of %s %s on node %s (asked from %s)", ref.partition_id, ref.conversion_id,
             "served from its rebuilt file" if reused else "rebuilt", meta.get("node_id"), here)
    return replace(ref, path=meta["path"], node_id=meta.get("node_id"), num_bytes=meta["num_bytes"],
                   checksum=meta["checksum"], num_rows=meta["num_rows"]), reused
