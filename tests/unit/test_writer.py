"""The catalog's single writer: one handle per process whichever thread asks first, restarted once
when it died, ended when no driver holds it any more, kept by every other driver when one exits
(also SIGKILLed), and losing no buffered record when it is killed (real Ray, real processes, no Spark)."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time

import pytest
import ray

from ftbridge.chaos.drivers import OtherDriver
from ftbridge.chaos.faults import FaultLog
from ftbridge.common import foreign
from ftbridge.common.config import RAY_NAMESPACE
from ftbridge.common.errors import CatalogUnavailableError, PartitionLostError
from ftbridge.lineage import queries
from ftbridge.lineage import writer as writer_module
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.kinds import EventKind
from ftbridge.lineage.rows import new_event
from ftbridge.lineage.writer import (
    HOLDER,
    SPOOL,
    CatalogClient,
    CatalogWriter,
    Journal,
    actor_name,
    end_writers,
    flush,
    get_writer,
    start_writer,
    writer_paths,
)
from tests.unit.test_catalog import conv_record

THREADS = 8


def _in_threads(fn, n: int = THREADS) -> list[BaseException]:
    """Run `fn` in `n` threads released together by a barrier; the errors they raised."""
    barrier, errors = threading.Barrier(n), []

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            fn(i)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a thread did not finish within 120 s"
    return errors


REPEATS = 8  # each a fresh catalog raced by every thread (~2 s each on 2 cores)


def test_threads_that_start_one_writer_at_once_all_keep_writing(ray_cluster, tmp_path):
    for rep in range(REPEATS):
        catalog = Catalog(str(tmp_path / f"race-{rep}.duckdb"))
        assert not _in_threads(lambda i, catalog=catalog: start_writer(catalog))  # every thread drops its handle
        gc.collect()
        records = [conv_record(n=1) for _ in range(THREADS)]
        errors = _in_threads(lambda i, catalog=catalog, records=records:
                             CatalogClient.of_actor(get_writer(catalog)).record_conversion(*records[i], []))
        assert not errors, f"repetition {rep}: {errors[0]!r}"
        with catalog.read() as con:
            got = {c["conversion_id"] for c in queries.conversions(con)}
        assert got == {conv.conversion_id for conv, _ in records}, f"repetition {rep}"
        assert end_writers([catalog.path]) == [catalog.path]
    assert not [p for p in writer_paths() if "race-" in p]


def test_a_dead_writer_is_started_again_and_the_call_lands_once(ray_cluster, tmp_path):
    catalog = Catalog(str(tmp_path / "restart.duckdb"))
    writer = start_writer(catalog)
    first_pid = writer.pid()
    conv, parts = conv_record()
    writer.record_conversion(conv, parts, [])
    ray.kill(writer.handle, no_restart=True)  # destroyed, not restarted: as when its owner dropped it
    again = conv_record()
    writer.record_conversion(*again, [])  # the old handle: restarted, retried once
    writer.record_conversion(conv, parts, [])  # a repeat of a landed record writes nothing
    assert writer.pid() != first_pid
    with catalog.read() as con:
        assert sorted(c["conversion_id"] for c in queries.conversions(con)) == sorted(
            [conv.conversion_id, again[0].conversion_id])
        assert len(queries.partitions(con, conv.conversion_id)) == len(parts)
    end_writers([catalog.path])


def test_ended_writer_leaves_no_actor(ray_cluster, tmp_path):
    catalog = Catalog(str(tmp_path / "ended.duckdb"))
    pid = start_writer(catalog).pid()
    assert catalog.path in writer_paths()
    assert end_writers([catalog.path]) == [catalog.path]
    assert catalog.path not in writer_paths()
    try:
        ray.get_actor(actor_name(catalog.path), namespace=RAY_NAMESPACE)
        raise AssertionError("the ended writer is still registered with Ray")
    except ValueError:
        pass
    from ftbridge.chaos.proctable import wait_gone

    assert not wait_gone([pid], timeout_s=30), "the ended writer's process is still running"


def _driver_a(catalog: Catalog, lease_s: float) -> OtherDriver:
    """Another driver process on the test's cluster that starts the catalog's writer."""
    return OtherDriver(ray.get_runtime_context().gcs_address, catalog.path, env={"FTBRIDGE_CATALOG_LEASE_S": str(lease_s)})


@ray.remote(num_cpus=0)
def _read_events_from_a_task(writer, conversion_id: str, n: int) -> list[str]:
    """What a read task does: its read events to the writer, through the handle it was given."""
    events = [new_event(conversion_id, i, EventKind.READ) for i in range(n)]
    writer.in_background().record_read("", events)
    return [ev.event_id for ev in events]


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_a_second_driver_keeps_the_writer_its_creator_leaves(ray_cluster, tmp_path, how):
    """Driver A starts the writer, then exits (or is SIGKILLed); driver B, which converts and reads
    throughout, keeps the same writer (not a restarted one) and loses no record or event."""
    catalog = Catalog(str(tmp_path / f"shared-{how}.duckdb"))
    driver_a = _driver_a(catalog, lease_s=3.0)
    pid = driver_a.writer_pid
    writer = start_writer(catalog)
    assert writer.pid() == pid, "driver B did not join driver A's writer"
    assert len(writer.holders()) == 2
    before = [conv_record(n=2) for _ in range(3)]
    for conv, parts in before:
        writer.record_conversion(conv, parts, [])
    events = ray.get(_read_events_from_a_task.remote(writer, before[0][0].conversion_id, 4), timeout=60)
    driver_a.end(how, FaultLog())
    after = [conv_record(n=2) for _ in range(3)]
    for i, (conv, parts) in enumerate(after):
        writer.record_conversion(conv, parts, [])
        events += ray.get(_read_events_from_a_task.remote(writer, conv.conversion_id, 4), timeout=60)
        if i == 0:
            time.sleep(4)  # past driver A's lease: a SIGKILLed holder has let go by now
    assert writer.pid() == pid, "the writer was ended with its creator"
    flush(catalog)
    with catalog.read() as con:
        assert {c["conversion_id"] for c in queries.conversions(con)} == {c.conversion_id for c, _ in before + after}
        assert {e["event_id"] for e in queries.events(con)} == set(events)
    assert writer.holders() == [HOLDER]  # A let go (at exit) or its lease ran out (SIGKILL)
    assert end_writers([catalog.path]) == [catalog.path]  # B was the last holder: the writer ends now
    with pytest.raises(ValueError):
        ray.get_actor(actor_name(catalog.path), namespace=RAY_NAMESPACE)


def test_a_driver_that_shuts_ray_down_is_not_connected_again_by_its_lease(ray_cluster, tmp_path):
    """After `ray.shutdown()` the lease thread makes no Ray call: one would start Ray again
    (Ray's auto-init joins the last cluster), and `Cluster.shutdown()` then refuses to end it."""
    catalog = Catalog(str(tmp_path / "shutdown.duckdb"))
    driver = _driver_a(catalog, lease_s=1.5)
    assert driver.shut_ray_down(), "a background renewal started Ray again after ray.shutdown()"


def test_a_writer_whose_only_driver_was_sigkilled_ends_itself(ray_cluster, tmp_path):
    catalog = Catalog(str(tmp_path / "orphan.duckdb"))
    driver_a = _driver_a(catalog, lease_s=2.0)
    pid = driver_a.writer_pid
    driver_a.end("sigkill", FaultLog())
    from ftbridge.chaos.proctable import wait_gone

    assert not wait_gone([pid], timeout_s=60), "the writer outlived its only driver's lease"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get_actor(actor_name(catalog.path), namespace=RAY_NAMESPACE)
        except ValueError:
            return
        time.sleep(0.2)
    raise AssertionError("the ended writer is still registered with Ray")


def test_records_a_killed_writer_had_buffered_are_committed_by_its_restart(ray_cluster, tmp_path):
    """A conversion's record and its read events are in the catalog although the writer was
    SIGKILLed before it committed them: they were journaled before the calls returned, and the
    restarted writer commits the journal (the conversion first: the events name it)."""
    catalog = Catalog(str(tmp_path / "journal.duckdb"))
    writer = ray.remote(CatalogWriter).options(max_restarts=-1, max_task_retries=-1, num_cpus=0).remote(
        catalog.path, 30.0, 3600.0)  # its flusher never runs within the test: only the journal holds them
    conv, parts = conv_record(n=3)
    created = new_event(conv.conversion_id, None, EventKind.CREATED)
    ray.get(writer.buffer_conversion.remote(conv, parts, [created]), timeout=60)
    events = [new_event(conv.conversion_id, i, EventKind.READ) for i in range(3)]
    ray.get(writer.record_read.remote("", events), timeout=60)
    with catalog.read() as con:
        assert queries.conversions(con) == [], "the record was committed before the kill"
        assert queries.events(con, conv.conversion_id) == [], "the events were committed before the kill"
    pid = ray.get(writer.pid.remote(), timeout=60)
    os.kill(pid, signal.SIGKILL)
    assert ray.get(writer.pid.remote(), timeout=120) != pid  # restarted
    with catalog.read() as con:
        assert len(queries.partitions(con, conv.conversion_id)) == 3
        assert {e["event_id"] for e in queries.events(con, conv.conversion_id)} == \
            {e.event_id for e in [created, *events]}
    assert not os.path.exists(catalog.path + ".journal") and not os.path.exists(catalog.path + ".journal.flushing")
    ray.kill(writer, no_restart=True)


def test_a_buffered_conversion_is_committed_before_a_transaction_that_changes_it(ray_cluster, tmp_path):
    """A rebuild's partition update right after a conversion's record was journaled (not yet
    committed) lands on the partition's row: the writer commits the buffered record first."""
    from ftbridge.lineage.rows import PartitionUpdate

    catalog = Catalog(str(tmp_path / "order.duckdb"))
    writer = ray.remote(CatalogWriter).options(num_cpus=0).remote(catalog.path, 30.0, 3600.0)
    conv, parts = conv_record(n=2)
    ray.get(writer.buffer_conversion.remote(conv, parts, []), timeout=60)
    ray.get(writer.update_partitions.remote(conv.conversion_id, [(1, PartitionUpdate(state="healthy", rebuilt_count=1))], []),
            timeout=60)
    with catalog.read() as con:
        assert [p["rebuilt_count"] for p in queries.partitions(con, conv.conversion_id)] == [0, 1]
    ray.kill(writer, no_restart=True)


def test_the_journal_replays_whole_frames_only(tmp_path):
    journal = Journal(str(tmp_path / "c.duckdb"))
    journal.append(("read", [{"event_id": "a"}]))
    journal.rotate()  # a flush under way when the writer died
    journal.append(("read", [{"event_id": "b"}]))
    journal.append(("run", ("r1", {"status": "running"}, [])))
    with open(journal.path, "ab") as f:
        f.write(b"\x00\x00\x01\x00cut short")  # the frame a kill interrupted: its call never returned
    assert journal.replay() == [("read", [{"event_id": "a"}]), ("read", [{"event_id": "b"}]),
                                ("run", ("r1", {"status": "running"}, []))]


def test_records_a_stopped_writer_could_not_take_are_kept_and_delivered_once(ray_cluster, tmp_path, monkeypatch):
    """The writer's process is stopped (SIGSTOP) past the emit bound: the records wait in the
    spool, and once it runs again (SIGCONT) every one of them is in the catalog exactly once.
    Meanwhile another catalog's writer takes this process's records at once: they do not queue
    behind the stopped writer's."""
    monkeypatch.setattr(writer_module, "EMIT_TIMEOUT_S", 1.0)  # the bound, shortened: no wait of 30 s
    monkeypatch.setattr(writer_module, "SPOOL_RETRY_S", 0.5)
    catalog, other = Catalog(str(tmp_path / "spool.duckdb")), Catalog(str(tmp_path / "other.duckdb"))
    writer, other_writer = start_writer(catalog), start_writer(other)
    conv, parts = conv_record(n=4)
    writer.record_conversion(conv, parts, [])
    other_conv, other_parts = conv_record(n=1)
    other_writer.record_conversion(other_conv, other_parts, [])
    pid = writer.pid()
    batches = [[new_event(conv.conversion_id, i, EventKind.READ)] for i in range(4)]
    other_read = new_event(other_conv.conversion_id, 0, EventKind.READ)
    os.kill(pid, signal.SIGSTOP)
    try:
        for batch in batches:
            writer.in_background().record_read("", batch)
        assert len(SPOOL) == len(batches), "the records were not kept while the writer was stopped"
        other_writer.in_background().record_read("", [other_read])
        assert len(SPOOL) == len(batches), "the other catalog's record waited behind the stopped writer's"
        flush(other)
        with other.read() as con:
            assert [e["event_id"] for e in queries.events(con, other_conv.conversion_id)] == [other_read.event_id]
    finally:
        os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while len(SPOOL) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not len(SPOOL), "the spool was not delivered within 60 s of the writer running again"
    flush(catalog)
    with catalog.read() as con:
        got = [e["event_id"] for e in queries.events(con, conv.conversion_id)]
    assert sorted(got) == sorted(b[0].event_id for b in batches)
    assert writer.pid() == pid and SPOOL.dropped == 0
    end_writers([catalog.path, other.path])


def test_a_writer_outage_while_a_loss_is_handled_is_an_outage_not_the_loss():
    """A read task records a partition it could not rebuild from inside its `except` block; when
    that writer call fails too, the error is the writer's, not the partition loss being handled."""
    loss = PartitionLostError(conversion_id="c1", partition=2, node_id="n1", cause="its node is gone")
    try:
        try:
            raise loss
        except PartitionLostError:
            raise RuntimeError("The actor died unexpectedly before finishing this task.")  # noqa: B904
    except RuntimeError as exc:
        outage = foreign.writer_call_failed(exc, "record_events", 30.0)
    assert isinstance(outage, CatalogUnavailableError) and "died during record_events" in str(outage)
    try:
        raise RuntimeError("wrapped") from loss
    except RuntimeError as exc:
        assert foreign.writer_call_failed(exc, "record_events", 30.0) is loss  # a cause is followed
