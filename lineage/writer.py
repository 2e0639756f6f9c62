"""The catalog's single writer in a Ray job: a Ray actor owned by the driver.

Ray tasks run in many processes and DuckDB allows one writer per file, so tasks never open
the catalog: they send records here. Every record carries a caller-made id, so a call that
Ray retries after the actor restarts (kill -9) writes nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftbridge.common import foreign
from ftbridge.common.config import RAY_NAMESPACE, settings
from ftbridge.lineage import records
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.kinds import ConversionStatus, EventKind, PartitionState

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.5
START_TIMEOUT_S = 120


class CatalogWriter:
    """Serialises every catalog write of a Ray job."""

    def __init__(self, path: str) -> None:
        self.catalog = Catalog(path)
        self._reads: set = set()
        self._buffer: list[dict] = []
        self._run_buffer: list[tuple[str, dict, list[dict]]] = []
        self._buf_lock = threading.Lock()   # guards the buffer only: read events never wait for DuckDB
        self._lock = threading.Lock()       # one DuckDB transaction at a time
        with self.catalog.write():
            pass  # create or migrate now, so a bad file fails at start, not mid-job
        self._flusher = threading.Thread(target=self._flush_loop, name="catalog-flush", daemon=True)
        self._flusher.start()

    def _flush_loop(self) -> None:
        while True:  # lives as long as the actor process; each pass is bounded
            threading.Event().wait(FLUSH_INTERVAL_S)
            try:
                self.flush()
            except Exception as exc:  # keep the buffer; the next pass retries
                log.warning("catalog flush failed: %s", exc)

    def flush(self) -> int:
        """Write buffered read events and training-run events now; returns how many."""
        with self._lock:
            with self._buf_lock:
                pending, self._buffer = self._buffer, []
                runs, self._run_buffer = self._run_buffer, []
            if not pending and not runs:
                return 0
            try:
                with self.catalog.write() as con:
                    records.insert_events(con, pending)
                    for run_id, fields, events in runs:
                        records.update_run(con, run_id, fields)
                        records.insert_run_events(con, events)
            except BaseException:
                with self._buf_lock:
                    self._buffer = pending + self._buffer
                    self._run_buffer = runs + self._run_buffer
                raise
            return len(pending) + sum(len(e) for _, _, e in runs)

    def pid(self) -> int:
        return os.getpid()

    def record_conversion(self, conversion: dict, partitions: list[dict], events: list[dict]) -> None:
        with self._lock, self.catalog.write() as con:
            records.insert_conversion(con, conversion, partitions)
            records.insert_events(con, events)

    def record_read(self, token: str, events: list[dict]) -> None:
        """A read event; a second read of the same block of the same materialized Dataset is a
        reconstruction. A streaming Dataset (token "") reads every partition once per pass."""
        with self._buf_lock:
            for ev in events:
                if not token:
                    continue
                key = (token, ev["conversion_id"], ev["partition_id"])
                if key in self._reads:
                    ev["kind"] = EventKind.OBJECT_RECONSTRUCTED
                self._reads.add(key)
            self._buffer.extend(events)

    def record_events(self, events: list[dict]) -> None:
        with self._lock, self.catalog.write() as con:
            records.insert_events(con, events)

    def update_partition(self, conversion_id: str, partition_id: int, fields: dict, events: list[dict]) -> None:
        with self._lock, self.catalog.write() as con:
            records.update_partition(con, conversion_id, partition_id, fields)
            records.insert_events(con, events)

    def set_status(self, conversion_id: str, status: str, partition_state: str | None, events: list[dict]) -> None:
        with self._lock, self.catalog.write() as con:
            records.set_conversion_status(con, conversion_id, status, partition_state)
            records.insert_events(con, events)

    def release(self, conversion_id: str, gone: list[str], waiting: list[dict], events: list[dict]) -> None:
        """Mark a conversion released; record which of its files are gone and which still wait."""
        with self._lock, self.catalog.write() as con:
            records.set_conversion_status(con, conversion_id, ConversionStatus.RELEASED, PartitionState.RELEASED)
            records.release_files(con, conversion_id, gone, waiting)
            records.insert_events(con, events)

    def record_run(self, run: dict, inputs: dict, events: list[dict]) -> None:
        with self._lock, self.catalog.write() as con:
            records.insert_run(con, run, inputs, events)

    def buffer_run_events(self, run_id: str, fields: dict, events: list[dict]) -> None:
        """`record_run_events`, written by the next flush (within FLUSH_INTERVAL_S): what Ray Train's
        controller sends per report, so a report costs it one round trip, not a transaction."""
        with self._buf_lock:
            self._run_buffer.append((run_id, fields, events))

    def record_run_events(self, run_id: str, fields: dict, events: list[dict]) -> None:
        """Events of a training run, and columns of its row to set (status, finished_at, ray_run_id)."""
        with self._lock, self.catalog.write() as con:
            records.update_run(con, run_id, fields)
            records.insert_run_events(con, events)


def actor_name(path: str) -> str:
    return "ftbridge-catalog-" + hashlib.sha1(path.encode()).hexdigest()[:16]


# One writer handle per (Ray cluster, catalog) in this process: the creating one. A Ray actor
# lives while its creating handle does (`max_restarts` does not bring back an actor whose
# owner dropped it), so two threads that each created a handle, with the later one stored,
# would end the writer when the first is dropped: lookup and creation happen under one lock.
_HANDLES: dict[tuple[str, str], Any] = {}  # Ray actor handles
_LOCK = threading.RLock()  # re-entrant: a finaliser that runs inside the lock may look up too
# Every handle this process created, with its catalog (kept alive, so ids are not reused): a
# caller still holding one after its writer was ended or replaced reaches the current writer.
_OWNED: dict[int, tuple[Any, str]] = {}


def _key(path: str) -> tuple[str, str]:
    return ray.get_runtime_context().gcs_address, path


def get_writer(catalog: Catalog):
    """The writer actor for `catalog`, created by (and owned by) this driver if it does not exist.

    It is pinned to the driver's node: the catalog path names a file on that machine. This
    process keeps the creating handle until the writer is ended (`end_writers`), so the actor
    does not die between conversions, whichever thread asked first.
    """
    key = _key(catalog.path)
    with _LOCK:
        handle = _HANDLES.get(key)
        if handle is None:
            handle = ray.remote(CatalogWriter).options(
                name=actor_name(catalog.path), namespace=RAY_NAMESPACE, get_if_exists=True, num_cpus=0,
                # Two threads: one call may wait for DuckDB while buffered read events keep flowing.
                max_restarts=-1, max_task_retries=-1, max_concurrency=2,
                scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(),
                                                                   soft=False),
            ).remote(catalog.path)
            _HANDLES[key] = handle
            _OWNED[id(handle)] = (handle, catalog.path)
        return handle


def start_writer(catalog: Catalog):
    """`get_writer`, then wait (bounded) until the actor has opened the catalog: a bad or busy
    file fails here, with the catalog's own error, before any work is done."""
    writer = get_writer(catalog)
    try:
        ray.get(writer.pid.remote(), timeout=START_TIMEOUT_S)
    except Exception as exc:  # Ray's actor errors carry the catalog's error as their cause
        forget_writer(catalog)
        raise foreign.writer_start_failed(exc, catalog.path) from None
    return writer


def flush(catalog: Catalog, timeout_s: float | None = None) -> int:
    """Commit buffered read events of this job's writer now (tests, audits run in-process)."""
    return call(get_writer(catalog), "flush", timeout_s=timeout_s)


def forget_writer(catalog: Catalog) -> None:
    """Drop this process's handle (e.g. after the writer failed to start)."""
    with _LOCK:
        for key in [k for k in _HANDLES if k[1] == catalog.path]:
            _OWNED.pop(id(_HANDLES.pop(key)), None)


def writer_paths() -> list[str]:
    """Catalogs whose writer this process owns, on the connected Ray cluster."""
    if not ray.is_initialized():
        return []
    gcs = ray.get_runtime_context().gcs_address
    with _LOCK:
        return [path for g, path in _HANDLES if g == gcs]


def end_writers(paths, timeout_s: float = 30.0) -> list[str]:
    """Flush and end the writers this process owns for the catalogs `paths` (catalogs no live
    conversion of this process uses any more); returns those it ended. A later call through a
    handle of one of them starts it again."""
    ended = []
    for path in paths:
        with _LOCK:
            handle = _HANDLES.pop(_key(path), None)  # stays in _OWNED: its holders reach the next writer
        if handle is None:
            continue
        try:
            ray.get(handle.flush.remote(), timeout=timeout_s)
        except Exception as exc:  # logged: the events still buffered in it are lost with it
            log.warning("catalog writer for %s did not flush before it was ended: %s", path, exc)
        try:
            ray.kill(handle, no_restart=True)
        except Exception as exc:  # already gone
            log.debug("catalog writer for %s was already gone: %s", path, exc)
        _wait_name_free(actor_name(path), timeout_s)
        ended.append(path)
    return ended


def _wait_name_free(name: str, timeout_s: float) -> None:
    """Until Ray no longer resolves `name` (a new writer of the same name would get the dead one)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=RAY_NAMESPACE)
        except ValueError:
            return
        time.sleep(0.1)
    log.warning("the ended catalog writer %s was still registered after %.0fs", name, timeout_s)


def _path_of(writer) -> str | None:
    """The catalog of `writer` if this process created (or replaced) that handle."""
    with _LOCK:
        entry = _OWNED.get(id(writer))
        return entry[1] if entry is not None and entry[0] is writer else None


def _current(writer):
    """The live handle for `writer`: the one this process stores now for its catalog, else itself."""
    path = _path_of(writer)
    if path is None:
        return writer
    with _LOCK:
        return _HANDLES.get(_key(path), writer)


def _restart(writer):
    """A new writer for the catalog of the dead `writer` (None if this process does not own it)."""
    path = _path_of(writer)
    if path is None:
        return None
    with _LOCK:
        if _HANDLES.get(_key(path)) is writer:
            _HANDLES.pop(_key(path))
        return get_writer(Catalog(path))


def call(writer, method: str, *args, timeout_s: float | None = None):
    """Call a writer method and wait, bounded; raise CatalogUnavailableError on timeout.

    When the writer died (it was ended, or its actor was destroyed: not on a timeout) and this
    process owns that catalog's writer, the writer is started again and the call made once
    more: every record carries its own id, so a call that had landed writes nothing twice.
    """
    timeout_s = settings().catalog_call_timeout_s if timeout_s is None else timeout_s
    current = _current(writer)
    for attempt in (1, 2):
        try:
            return ray.get(getattr(current, method).remote(*args), timeout=timeout_s)
        except ray.exceptions.ActorDiedError as exc:
            fresh = _restart(current) if attempt == 1 else None
            if fresh is None:
                raise foreign.writer_call_failed(exc, method, timeout_s) from exc
            log.info("the catalog writer had died before %s; started it again, retrying once", method)
            current = fresh
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
            raise foreign.writer_call_failed(exc, method, timeout_s) from exc
    raise AssertionError("unreachable: the loop returns or raises")


def emit(writer, method: str, *args) -> None:
    """Best-effort record from a task: a catalog outage must not fail a data read."""
    try:
        call(writer, method, *args, timeout_s=30)
    except Exception as exc:  # logged, never raised: the data path wins over the audit trail
        log.warning("could not record %s in the catalog: %s", method, exc)
