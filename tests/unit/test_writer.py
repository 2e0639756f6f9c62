"""The catalog's single writer per process: one creating handle whichever thread asks first,
restarted once when it died, ended when its catalog is no longer used (real Ray, no Spark)."""

from __future__ import annotations

import gc
import threading

import ray

from ftbridge.common.config import RAY_NAMESPACE
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.writer import actor_name, call, end_writers, get_writer, start_writer, writer_paths
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
        errors = _in_threads(lambda i, catalog=catalog, records=records: call(get_writer(catalog), "record_conversion", *records[i], []))
        assert not errors, f"repetition {rep}: {errors[0]!r}"
        with catalog.read() as con:
            got = {c["conversion_id"] for c in queries.conversions(con)}
        assert got == {conv["conversion_id"] for conv, _ in records}, f"repetition {rep}"
        assert end_writers([catalog.path]) == [catalog.path]
    assert not [p for p in writer_paths() if "race-" in p]


def test_a_dead_writer_is_started_again_and_the_call_lands_once(ray_cluster, tmp_path):
    catalog = Catalog(str(tmp_path / "restart.duckdb"))
    writer = start_writer(catalog)
    first_pid = ray.get(writer.pid.remote(), timeout=60)
    conv, parts = conv_record()
    call(writer, "record_conversion", conv, parts, [])
    ray.kill(writer, no_restart=True)  # destroyed, not restarted: as when its owner dropped it
    again = conv_record()
    call(writer, "record_conversion", *again, [])  # the old handle: restarted, retried once
    call(writer, "record_conversion", conv, parts, [])  # a repeat of a landed record writes nothing
    assert call(writer, "pid") != first_pid
    with catalog.read() as con:
        assert sorted(c["conversion_id"] for c in queries.conversions(con)) == sorted(
            [conv["conversion_id"], again[0]["conversion_id"]])
        assert len(queries.partitions(con, conv["conversion_id"])) == len(parts)
    end_writers([catalog.path])


def test_ended_writer_leaves_no_actor(ray_cluster, tmp_path):
    catalog = Catalog(str(tmp_path / "ended.duckdb"))
    pid = ray.get(start_writer(catalog).pid.remote(), timeout=60)
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
