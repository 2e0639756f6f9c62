"""The catalog's single writer on a Ray cluster: a detached Ray actor that its holders lease.

Ray tasks run in many processes and DuckDB allows one writer per file, so tasks never open
the catalog: they send records here. Every record carries a caller-made id, so a call that
Ray retries after the actor restarts (kill -9) writes nothing twice.

No driver owns the writer: it is detached, and every driver process that uses the catalog
holds a lease on it, renewed in the background. A driver that exits (even SIGKILLed) leaves the
writer to the others; when the last lease is let go, or has run out (its holder died), the
writer commits what it buffered and ends itself. Buffered records (a conversion's record, read
events, training reports) are journaled beside the catalog before the call returns, so a kill -9 of the writer
loses none of them: the restarted writer commits the journal first.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import hashlib
import logging
import os
import pickle
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftbridge.common import foreign
from ftbridge.common.config import RAY_NAMESPACE, settings
from ftbridge.lineage import records
from ftbridge.lineage.catalog import Catalog, before_read
from ftbridge.lineage.kinds import EventKind
from ftbridge.lineage.rows import (
    ConversionRow,
    EventRow,
    LeftoverRow,
    PartitionRow,
    PartitionUpdate,
    RunEventRow,
    RunRow,
    RunUpdate,
)

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.5
START_TIMEOUT_S = 120
START_GRACE_S = 10.0                  # a new writer waits this long for its creator's first lease
RENEW_TICK_S = 0.2                    # how often the lease thread looks for leases due (a third of their length)
RunBatch = tuple[str, RunUpdate, list[RunEventRow]]  # a run's buffered update and events
ConversionBatch = tuple[ConversionRow, list[PartitionRow], list[EventRow]]  # a conversion's buffered record
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # this process, as a holder


class Journal:
    """Records the writer buffered and has not committed, in a file beside the catalog.

    Frames of (length, pickle); a frame cut short by a kill ends the replay. A flush moves the
    journal aside (`.flushing`) before it commits and deletes it after, so what a crash interrupts
    is replayed, and replaying twice writes nothing twice (every record has its own id).
    """

    def __init__(self, catalog_path: str) -> None:
        self.path = catalog_path + ".journal"
        self.flushing = self.path + ".flushing"
        self._file: BinaryIO | None = None

    def append(self, entry: tuple) -> None:
        blob = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
        file = self._file
        if file is None:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # as private as the catalog
            file = self._file = os.fdopen(fd, "ab")  # kept open between appends; closed by rotate()
        file.write(struct.pack(">I", len(blob)) + blob)
        file.flush()  # in the OS's hands: a killed process loses nothing (a host crash may)

    def rotate(self) -> None:
        """Move what is journaled aside for a flush; new appends start a fresh journal."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if os.path.exists(self.path):
            os.replace(self.path, self.flushing)

    def committed(self) -> None:
        if os.path.exists(self.flushing):
            os.remove(self.flushing)

    def replay(self) -> list[tuple]:
        """Entries a dead writer journaled and did not commit (the interrupted flush's first)."""
        entries = []
        for path in (self.flushing, self.path):
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            at = 0
            while at + 4 <= len(data):
                (size,) = struct.unpack(">I", data[at:at + 4])
                if at + 4 + size > len(data):
                    break  # the frame the kill cut short: its call never returned
                entries.append(pickle.loads(data[at + 4:at + 4 + size]))
                at += 4 + size
        return entries


class CatalogWriter(records.Transactions):
    """Serialises every catalog write of a Ray job (the transactions of `records.Transactions`,
    one at a time, and buffered read events and training reports)."""

    def __init__(self, path: str, lease_s: float = 30.0, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        super().__init__(Catalog(path))
        self.lease_s = lease_s                  # the creator's setting: a holder that stopped renewing let go
        self._flush_interval_s = flush_interval_s
        self._reads: set = set()
        self._buffer: list[EventRow] = []
        self._run_buffer: list[RunBatch] = []
        self._conv_buffer: list[ConversionBatch] = []  # conversions journaled, committed by the next flush
        self._buf_lock = threading.Lock()   # guards the buffers and the journal: read events never wait for DuckDB
        self._lock = threading.Lock()       # one DuckDB transaction at a time
        self.journal = Journal(path)
        with self.catalog.write() as con:  # create or migrate now, so a bad file fails at start, not mid-job
            self._commit(con, *self._split(self.journal.replay()))
        self.journal.rotate()
        self.journal.committed()
        # Holder -> when its lease runs out. A restarted writer gives its holders one lease time
        # to renew before it counts them gone.
        self._leases: dict[str, float] = {}
        self._restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self._quiet_until = time.monotonic() + (lease_s if self._restarted else START_GRACE_S)
        self._closing = False
        self._flusher = threading.Thread(target=self._flush_loop, name="catalog-flush", daemon=True)
        self._flusher.start()

    @staticmethod
    def _split(entries: list[tuple]) -> tuple[list[ConversionBatch], list[EventRow], list[RunBatch]]:
        convs = [payload for kind, payload in entries if kind == "conversion"]
        # A journal of a writer before typed rows holds dicts of the same columns.
        reads = [EventRow(**ev) if isinstance(ev, dict) else ev
                 for kind, payload in entries if kind == "read" for ev in payload]
        runs = [(run_id, RunUpdate(**update) if isinstance(update, dict) else update,
                 [RunEventRow(**e) if isinstance(e, dict) else e for e in events])
                for kind, (run_id, update, events) in ((k, p) for k, p in entries if k == "run")]
        return convs, reads, runs

    @staticmethod
    def _commit(con, convs: list[ConversionBatch], reads: list[EventRow], runs: list[RunBatch]) -> None:
        for conv in convs:  # first: the rows the others may refer to
            records.insert_recorded_conversion(con, *conv)
        records.insert_events(con, reads)
        for run_id, update, events in runs:
            records.update_run(con, run_id, update)
            records.insert_run_events(con, events)

    def hold(self, holder: str) -> float | None:
        """Take or renew `holder`'s lease; how long it lasts, or None when the writer is ending (make a new one)."""
        with self._buf_lock:
            if self._closing:
                return None
            self._leases[holder] = time.monotonic() + self.lease_s
            return self.lease_s

    def let_go(self, holder: str) -> bool:
        """Drop `holder`'s lease. True when no lease is left: the writer is ending, and the caller,
        which flushes and ends it, is the last user (no new lease is granted from now on)."""
        with self._buf_lock:
            self._leases.pop(holder, None)
            now = time.monotonic()
            if self._closing or any(until > now for until in self._leases.values()) \
                    or (self._restarted and now < self._quiet_until):  # holders of before the restart may renew yet
                return False
            self._closing = True
            return True

    def holders(self) -> list[str]:
        now = time.monotonic()
        with self._buf_lock:
            return sorted(h for h, until in self._leases.items() if until > now)

    def _unheld(self) -> bool:
        """Every holder let go or stopped renewing, and no call is under way or buffered: the writer
        ends itself (once). A writer too busy to answer renewals is not unheld."""
        now = time.monotonic()
        with self._buf_lock:
            if self._closing or now < self._quiet_until or any(until > now for until in self._leases.values()) \
                    or self._lock.locked() or self._buffer or self._run_buffer or self._conv_buffer:
                return False
            self._closing = True
            return True

    def _flush_loop(self) -> None:
        while True:  # lives as long as the actor process; each pass is bounded
            threading.Event().wait(self._flush_interval_s)
            try:
                self.flush()
            except Exception as exc:  # keep the buffer (and its journal); the next pass retries
                log.warning("catalog flush failed: %s", exc)
                continue
            if self._unheld():
                log.info("no driver holds the catalog writer for %s any more; it ends", self.catalog.path)
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return

    def flush(self) -> int:
        """Write buffered conversions, read events and training-run events now; returns how many."""
        with self._lock:
            return self._flush_locked()

    def _flush_locked(self) -> int:
        with self._buf_lock:
            convs, self._conv_buffer = self._conv_buffer, []
            pending, self._buffer = self._buffer, []
            runs, self._run_buffer = self._run_buffer, []
            if not convs and not pending and not runs:
                return 0
            self.journal.rotate()
        try:
            with self.catalog.write() as con:
                self._commit(con, convs, pending, runs)
        except BaseException:
            with self._buf_lock:  # back into the buffers, and into the journal again
                self._conv_buffer = convs + self._conv_buffer
                self._buffer = pending + self._buffer
                self._run_buffer = runs + self._run_buffer
                for conv in convs:
                    self.journal.append(("conversion", conv))
                self.journal.append(("read", pending))
                for run in runs:
                    self.journal.append(("run", run))
                self.journal.committed()
            raise
        self.journal.committed()
        return len(convs) + len(pending) + sum(len(e) for _, _, e in runs)

    def pid(self) -> int:
        return os.getpid()

    @contextlib.contextmanager
    def transaction(self) -> Iterator:
        with self._lock:  # one DuckDB transaction at a time
            if self._conv_buffer:  # a conversion's rows go in before any change to them
                self._flush_locked()
            with self.catalog.write() as con:
                yield con

    def buffer_conversion(self, conversion: ConversionRow, partitions: list[PartitionRow],
                          events: list[EventRow]) -> None:
        """`record_conversion`, journaled now (durable when the call returns) and committed by the
        next flush, or before the next transaction, which may change its rows."""
        with self._buf_lock:
            self.journal.append(("conversion", (conversion, partitions, events)))
            self._conv_buffer.append((conversion, partitions, events))

    def record_read(self, token: str, events: list[EventRow]) -> None:
        """Read events; a second read of the same block of the same materialized Dataset is a
        reconstruction. A streaming Dataset (token "") reads every partition once per pass."""
        with self._buf_lock:
            for ev in events:
                if not token:
                    continue
                key = (token, ev.conversion_id, ev.partition_id)
                if key in self._reads:
                    ev.kind = EventKind.OBJECT_RECONSTRUCTED
                self._reads.add(key)
            self.journal.append(("read", events))
            self._buffer.extend(events)

    def buffer_run_events(self, run_id: str, update: RunUpdate, events: list[RunEventRow]) -> None:
        """`record_run_events`, written by the next flush (within FLUSH_INTERVAL_S): what Ray Train's
        controller sends per report, so a report costs it one round trip, not a transaction."""
        with self._buf_lock:
            self.journal.append(("run", (run_id, update, events)))
            self._run_buffer.append((run_id, update, events))


def actor_name(path: str) -> str:
    return "ftbridge-catalog-" + hashlib.sha1(path.encode()).hexdigest()[:16]


# One writer handle per (Ray cluster, catalog) in this process, looked up or created under one
# lock, with this process's lease on it renewed in the background until `end_writers`.
_HANDLES: dict[tuple[str, str], Any] = {}  # Ray actor handles
_LOCK = threading.RLock()  # re-entrant: a finaliser that runs inside the lock may look up too
# Every handle this process got, with its catalog (kept alive, so ids are not reused): a caller
# still holding one after its writer was ended or replaced reaches the current writer.
_OWNED: dict[int, tuple[Any, str]] = {}
_RENEWER: list[threading.Thread] = []
_LEASES: dict[tuple[str, str], float] = {}  # how long each writer's lease on this process lasts


def _key(path: str) -> tuple[str, str]:
    return ray.get_runtime_context().gcs_address, path


def get_writer(catalog: Catalog):
    """The writer actor for `catalog`, created (detached) if no driver on the cluster has one.

    It is pinned to the node of the driver that created it: the catalog path names a file on
    that machine. This process holds a lease on it until it ends its use (`end_writers`), or
    exits: then the writer carries on for the other drivers, or ends once none holds it.
    """
    key = _key(catalog.path)
    with _LOCK:
        handle = _HANDLES.get(key)
        if handle is None:
            handle = _new_writer(catalog)
            handle.hold.remote(HOLDER)  # granted before any later call of this process (actor calls keep order)
            _HANDLES[key] = handle
            _LEASES.setdefault(key, settings().catalog_lease_s)  # start_writer learns the writer's own
            _OWNED[id(handle)] = (handle, catalog.path)
            _start_renewer()
        return handle


def _new_writer(catalog: Catalog) -> Any:
    """The named writer actor of `catalog`: the live one if any driver made it, else a new one here."""
    return ray.remote(CatalogWriter).options(
        name=actor_name(catalog.path), namespace=RAY_NAMESPACE, get_if_exists=True, num_cpus=0,
        lifetime="detached",
        # Two threads: one call may wait for DuckDB while buffered read events keep flowing.
        max_restarts=-1, max_task_retries=-1, max_concurrency=2,
        scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
    ).remote(catalog.path, settings().catalog_lease_s)


def _start_renewer() -> None:
    """Once per process: renew this process's leases; let go of them when the process exits."""
    if _RENEWER:
        return
    thread = threading.Thread(target=_renew_loop, name="catalog-lease", daemon=True)
    _RENEWER.append(thread)
    thread.start()
    atexit.register(_let_go_at_exit)  # after ray.init's own hook was registered: runs before Ray shuts down


def _renew_loop() -> None:
    """Renew each held writer's lease every third of its length (learned from the writer)."""
    renewed: dict[tuple[str, str], float] = {}
    while True:  # a daemon thread: ends with the process; each pass is bounded
        time.sleep(RENEW_TICK_S)
        cluster = _connected_cluster()
        if cluster is None:
            continue
        now = time.monotonic()
        with _LOCK:
            due = [(key, handle) for key, handle in _HANDLES.items() if key[0] == cluster
                   and now - renewed.setdefault(key, now) >= _LEASES.get(key, settings().catalog_lease_s) / 3]
        for key, handle in due:
            renewed[key] = now
            try:
                granted = ray.get(handle.hold.remote(HOLDER), timeout=_LEASES.get(key, 3.0) / 3)
            except Exception as exc:  # the writer is restarting or its node is gone: the next call finds out
                log.debug("could not renew the lease on the catalog writer for %s: %s", key[1], exc)
                continue
            with _LOCK:
                if granted is not None:
                    _LEASES[key] = granted
                elif _HANDLES.get(key) is handle:  # it is ending: the next get_writer makes a new one
                    _HANDLES.pop(key)


def _connected_cluster() -> str | None:
    """The GCS address of the Ray cluster this process is connected to, or None.

    Checked before every renewal: an actor call made after the user's `ray.shutdown()` would
    start Ray again (Ray's auto-init), joining the last cluster or starting a new one under the
    user's feet; and a handle from an earlier connection cannot reach its writer anyway.
    """
    if not ray.is_initialized():
        return None
    return ray.get_runtime_context().gcs_address


def _let_go_at_exit() -> None:
    if ray.is_initialized():
        end_writers([path for _, path in list(_HANDLES)], timeout_s=5.0)


def start_writer(catalog: Catalog) -> CatalogClient:
    """`get_writer`, then wait (bounded) until the actor has opened the catalog and granted this
    process its lease: a bad or busy file fails here, with the catalog's own error, before any
    work is done. A writer that was just ending is waited out and a new one started (once)."""
    for attempt in (1, 2):
        writer = get_writer(catalog)
        try:
            lease = ray.get(writer.hold.remote(HOLDER), timeout=START_TIMEOUT_S)
            if lease is not None:
                with _LOCK:
                    _LEASES[_key(catalog.path)] = lease
                return CatalogClient.of_actor(writer)
            failure: BaseException = TimeoutError("the catalog's previous writer was ending and did not end")
        except Exception as exc:  # Ray's actor errors carry the catalog's error as their cause
            failure = exc
        forget_writer(catalog)
        if attempt == 2 or not isinstance(failure, (ray.exceptions.ActorDiedError, TimeoutError)):
            break
        _wait_name_free(actor_name(catalog.path), START_TIMEOUT_S)  # an ending writer: then start a new one
    raise foreign.writer_start_failed(failure, catalog.path) from None


def flush(catalog: Catalog, timeout_s: float | None = None) -> int:
    """Commit buffered read events of this job's writer now (tests, audits run in-process)."""
    return CatalogClient.of_actor(get_writer(catalog)).flush(timeout_s)


def forget_writer(catalog: Catalog) -> None:
    """Drop this process's handle (e.g. after the writer failed to start)."""
    with _LOCK:
        for key in [k for k in _HANDLES if k[1] == catalog.path]:
            _OWNED.pop(id(_HANDLES.pop(key)), None)


def writer_paths() -> list[str]:
    """Catalogs whose writer this process holds, on the connected Ray cluster."""
    if not ray.is_initialized():
        return []
    gcs = ray.get_runtime_context().gcs_address
    with _LOCK:
        return [path for g, path in _HANDLES if g == gcs]


def end_writers(paths, timeout_s: float = 30.0) -> list[str]:
    """Let go of this process's lease on the writers of the catalogs `paths` (catalogs no live
    conversion of this process uses any more); returns those. A writer no other driver holds is
    flushed and ended now. A later call through a handle of one of them starts it again."""
    ended = []
    for path in paths:
        with _LOCK:
            handle = _HANDLES.pop(_key(path), None)  # stays in _OWNED: its holders reach the next writer
        if handle is None:
            continue
        ended.append(path)
        try:
            last = ray.get(handle.let_go.remote(HOLDER), timeout=timeout_s)
        except Exception as exc:  # already gone, or its node is: nothing of ours to end
            log.debug("catalog writer for %s did not answer let_go: %s", path, exc)
            continue
        if not last:
            continue  # another driver holds it: it carries on for them
        try:
            ray.get(handle.flush.remote(), timeout=timeout_s)
        except Exception as exc:  # what it buffered stays in its journal: the next writer commits it
            log.warning("catalog writer for %s did not flush before it was ended: %s", path, exc)
        try:
            ray.kill(handle, no_restart=True)
        except Exception as exc:  # already gone
            log.debug("catalog writer for %s was already gone: %s", path, exc)
        _wait_name_free(actor_name(path), timeout_s)
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
    """A live writer for the catalog of the dead `writer` (None if this process did not get that
    handle): another driver's new one, or one this process starts."""
    path = _path_of(writer)
    if path is None:
        return None
    with _LOCK:
        if _HANDLES.get(_key(path)) is writer:
            _HANDLES.pop(_key(path))
    return start_writer(Catalog(path)).handle


def call(writer, method: str, *args, timeout_s: float | None = None, sent: Any = None):
    """Call a writer method and wait, bounded; raise CatalogUnavailableError on timeout.

    `sent`: the call's ref if it was made already (`Pending`): its first attempt is waited for,
    not made again.

    When the writer died (it was ended, or its actor was destroyed: not on a timeout) and this
    process owns that catalog's writer, the writer is started again and the call made once
    more: every record carries its own id, so a call that had landed writes nothing twice.
    """
    timeout_s = settings().catalog_call_timeout_s if timeout_s is None else timeout_s
    current = _current(writer)
    for attempt in (1, 2):
        try:
            ref = sent if attempt == 1 and sent is not None else getattr(current, method).remote(*args)
            return ray.get(ref, timeout=timeout_s)
        except ray.exceptions.ActorDiedError as exc:
            fresh = _restart(current) if attempt == 1 else None
            if fresh is None:
                raise foreign.writer_call_failed(exc, method, timeout_s) from exc
            log.info("the catalog writer had died before %s; started it again, retrying once", method)
            current = fresh
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
            raise foreign.writer_call_failed(exc, method, timeout_s) from exc
    raise AssertionError("unreachable: the loop returns or raises")


EMIT_TIMEOUT_S = 30.0    # a task's wait for the writer before its record goes to the spool
SPOOL_MAX = 10_000       # records a process keeps for a writer out of reach; beyond that the oldest go
SPOOL_RETRY_S = 5.0      # how often the spool tries the writer again


class Spool:
    """Records this process could not deliver, kept in order per writer and sent again until that
    writer takes them (every record has its own id: one that had landed after all writes nothing
    twice). Each writer's records wait only behind that writer's: a catalog whose writer is gone
    never holds up the records of another catalog.

    Bounded: past SPOOL_MAX records in all the oldest is dropped, counted and logged as an error.
    What is kept lives in this process: a worker that exits with records kept logs how many it loses.
    """

    def __init__(self) -> None:
        self._calls: dict[Any, collections.deque] = {}   # writer handle -> its (method, args), in order
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        atexit.register(self._at_exit)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._calls.values())

    def waiting(self, writer) -> bool:
        """Records for `writer` are kept: a new one goes behind them."""
        with self._lock:
            return bool(self._calls.get(writer))

    def keep(self, writer, method: str, args: tuple) -> None:
        with self._lock:
            if sum(len(q) for q in self._calls.values()) >= SPOOL_MAX:
                oldest = max(self._calls.values(), key=len)
                lost, _ = oldest.popleft()
                self.dropped += 1
                log.error("the catalog writer has been out of reach for long: %d records kept, the oldest "
                          "for the writer with the most (%s) dropped (%d so far)", SPOOL_MAX, lost, self.dropped)
            self._calls.setdefault(writer, collections.deque()).append((method, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="catalog-spool", daemon=True)
                self._thread.start()

    def _drain(self) -> None:
        while True:  # until the spool is empty; each pass is bounded
            time.sleep(SPOOL_RETRY_S)
            with self._lock:
                writers = [w for w, q in self._calls.items() if q]
                if not writers:
                    self._calls.clear()
                    self._thread = None
                    return
            for writer in writers:
                self._deliver(writer)

    def _deliver(self, writer) -> None:
        """Send `writer`'s kept records in order until one does not go through."""
        while True:
            with self._lock:
                queue = self._calls.get(writer)
                if not queue:
                    self._calls.pop(writer, None)
                    return
                method, args = queue[0]
            try:
                call(writer, method, *args, timeout_s=EMIT_TIMEOUT_S)
            except Exception as exc:  # still out of reach: the next pass tries again
                log.debug("the catalog writer is still out of reach (%d records kept): %s", len(self), exc)
                return
            with self._lock:
                queue.popleft()
                if not queue:
                    self._calls.pop(writer, None)
                    log.info("the catalog writer is back: every record kept for it was delivered")

    def _at_exit(self) -> None:
        kept = len(self)
        if kept:
            log.error("this process exits with %d catalog records the writer never took", kept)


SPOOL = Spool()


def emit(writer, method: str, *args) -> None:
    """A record from a task: a catalog outage must not fail a data read, nor lose the record.

    Waits for the writer at most EMIT_TIMEOUT_S; a record it could not take then is kept in this
    process's spool and delivered when the writer is back (records kept before go first).
    """
    if SPOOL.waiting(writer):
        SPOOL.keep(writer, method, args)  # behind the ones waiting: this writer is still out of reach
        return
    try:
        call(writer, method, *args, timeout_s=EMIT_TIMEOUT_S)
    except Exception as exc:  # never raised: the data path wins; the record waits in the spool
        log.warning("could not record %s in the catalog now (kept, sent again every %.0fs): %s",
                    method, SPOOL_RETRY_S, exc)
        SPOOL.keep(writer, method, args)


class Pending:
    """A catalog call under way (`CatalogClient.record_conversion_soon`): `wait()` until the writer
    took it, through `call` (bounded, a dead writer started again), raising what the call itself
    would. Safe to wait from several threads; the outcome is kept."""

    def __init__(self, writer: Any = None, method: str = "", args: tuple = (), ref: Any = None) -> None:
        self._call = (writer, method, args)  # what `call` makes again if the writer died before it took it
        self._ref = ref
        self._lock = threading.Lock()
        self._done = ref is None
        self._error: BaseException | None = None

    def wait(self, timeout_s: float | None = None) -> None:
        with self._lock:
            if not self._done:
                self._done = True
                writer, method, args = self._call
                try:
                    call(writer, method, *args, timeout_s=timeout_s, sent=self._ref)
                except BaseException as exc:  # kept for every waiter
                    self._error = exc
                self._ref = None
            if self._error is not None:
                raise self._error


# Flushes sent and not waited for, per catalog: a read of that catalog in this process waits for
# them first (`Catalog.read`), so it sees every read event a returned Dataset's build recorded.
_FLUSHES: dict[str, list] = {}


def _await_flushes(path: str) -> None:
    with _LOCK:
        refs = _FLUSHES.pop(path, [])
    if not refs or not ray.is_initialized():
        return
    _, late = ray.wait(refs, num_returns=len(refs), timeout=settings().catalog_call_timeout_s)
    if late:  # journaled all the same: the writer commits them with its next flush
        log.warning("the catalog writer for %s has not committed %d flushes; reading without them", path, len(late))


before_read(_await_flushes)


class CatalogClient:
    """Every catalog write of a process, typed, in front of both paths: the catalog's writer actor
    (drivers and tasks of a Ray job: `start_writer`) or the file itself (no Ray: `direct`).

    Calls wait for the writer, bounded (CatalogUnavailableError). A client `in_background()` (read
    tasks, Ray Train's controller) never raises: what the writer cannot take now is spooled and
    sent again (see `emit`). Picklable: it holds the actor handle, or the catalog's path.
    """

    def __init__(self, handle: Any = None, catalog: Catalog | None = None, background: bool = False) -> None:
        if (handle is None) == (catalog is None):
            raise ValueError("a CatalogClient needs a writer actor handle or a catalog, not both")
        self.handle, self.background = handle, background
        self.transactions = records.Transactions(catalog) if catalog is not None else None

    @classmethod
    def direct(cls, catalog: Catalog) -> CatalogClient:
        """Writes straight into the file, each its own transaction (no writer actor may be running)."""
        return cls(catalog=catalog)

    @classmethod
    def of_actor(cls, handle: Any) -> CatalogClient:
        return cls(handle=handle)

    def in_background(self) -> CatalogClient:
        """This client for a task: records that cannot reach the writer are spooled, never raised."""
        return CatalogClient(self.handle, None if self.transactions is None else self.transactions.catalog, True)

    def _send(self, method, *args, timeout_s: float | None = None):
        if self.transactions is not None:
            return method(self.transactions, *args)
        if self.background:
            emit(self.handle, method.__name__, *args)
            return None
        return call(self.handle, method.__name__, *args, timeout_s=timeout_s)

    # -- records ------------------------------------------------------------------------------
    def record_conversion(self, conversion: ConversionRow, partitions: list[PartitionRow],
                          events: list[EventRow]) -> None:
        self._send(records.Transactions.record_conversion, conversion, partitions, events)

    def record_conversion_soon(self, conversion: ConversionRow, partitions: list[PartitionRow],
                               events: list[EventRow]) -> Pending:
        """`record_conversion` sent now and waited for later (`Pending.wait`): the last reads of the
        Dataset run while the writer journals it. The wait ends once it is journaled (durable); it
        is committed by the writer's next flush (`flush_soon`; a read of the catalog in this process
        waits for it) or before any later transaction. A direct client writes it at once."""
        if self.transactions is not None:
            self.record_conversion(conversion, partitions, events)
            return Pending()
        current = _current(self.handle)
        args = (conversion, partitions, events)
        return Pending(current, "buffer_conversion", args, current.buffer_conversion.remote(*args))

    def record_events(self, events: list[EventRow]) -> None:
        self._send(records.Transactions.record_events, events)

    def update_partition(self, conversion_id: str, partition_id: int, update: PartitionUpdate,
                         events: list[EventRow]) -> None:
        self.update_partitions(conversion_id, [(partition_id, update)], events)

    def update_partitions(self, conversion_id: str, updates: list[tuple[int, PartitionUpdate]],
                          events: list[EventRow]) -> None:
        self._send(records.Transactions.update_partitions, conversion_id, updates, events)

    def set_status(self, conversion_id: str, status: str, partition_state: str | None,
                   events: list[EventRow]) -> None:
        self._send(records.Transactions.set_status, conversion_id, status, partition_state, events)

    def release(self, conversion_id: str, gone: list[str], waiting: list[dict], events: list[EventRow]) -> None:
        self._send(records.Transactions.release, conversion_id, gone, waiting, events)

    def files_freed(self, conversion_id: str, gone: list[str], waiting: list[LeftoverRow], events: list[EventRow],
                    release: bool) -> None:
        self._send(records.Transactions.files_freed, conversion_id, gone, waiting, events, release)

    def record_run(self, run: RunRow, inputs: dict[str, str], events: list[RunEventRow]) -> None:
        self._send(records.Transactions.record_run, run, inputs, events)

    def record_run_events(self, run_id: str, update: RunUpdate, events: list[RunEventRow]) -> None:
        self._send(records.Transactions.record_run_events, run_id, update, events)

    # -- buffered by the writer (written within FLUSH_INTERVAL_S, journaled at once) --------
    def record_read(self, token: str, events: list[EventRow]) -> None:
        if self.transactions is not None:
            return self.transactions.record_events(events)
        self._send(CatalogWriter.record_read, token, events)

    def buffer_run_events(self, run_id: str, update: RunUpdate, events: list[RunEventRow]) -> None:
        if self.transactions is not None:
            return self.transactions.record_run_events(run_id, update, events)
        self._send(CatalogWriter.buffer_run_events, run_id, update, events)

    def flush(self, timeout_s: float | None = None) -> int:
        """Commit what the writer buffered now; how many records."""
        if self.transactions is not None:
            return 0
        return self._send(CatalogWriter.flush, timeout_s=timeout_s)

    def flush_soon(self) -> None:
        """`flush` without waiting: what the writer buffered is journaled already (durable); a read
        of the catalog in this process waits for this commit first. A writer this process did not
        get a handle of from `get_writer` is flushed and waited for now."""
        if self.transactions is not None:
            return
        path = _path_of(self.handle)
        if path is None:
            self.flush()
            return
        ref = _current(self.handle).flush.remote()
        with _LOCK:
            sent = _FLUSHES.get(path, [])
            if sent:  # the ones committed since need no waiting (nor their refs kept)
                _, sent = ray.wait(sent, num_returns=len(sent), timeout=0)
            _FLUSHES[path] = [*sent, ref]

    def holders(self) -> list[str]:
        """The processes holding a lease on the writer (none for a direct client)."""
        return [] if self.transactions is not None else self._send(CatalogWriter.holders)

    def pid(self) -> int:
        """The writer's process id (this process's, for a direct client)."""
        return os.getpid() if self.transactions is not None else self._send(CatalogWriter.pid)


def client_for(catalog: Catalog) -> CatalogClient:
    """The writer actor's client when this process is on a Ray cluster, else a direct one."""
    return start_writer(catalog) if ray.is_initialized() else CatalogClient.direct(catalog)
