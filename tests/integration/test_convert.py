"""Recoverable conversion with real Spark on a real Ray cluster and real DuckDB files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest
import ray

import ftbridge
from examples import round_trip
from ftbridge.adapters import ray as ray_adapter
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from ftbridge.convert.spill.batches import spill_metadata
from ftbridge.errors import (
    ConfigurationError,
    ConversionError,
    ConversionReleasedError,
    NonDeterministicRebuildError,
    UnknownConversionError,
)
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog
from tests.conftest import python_env, run_child


def make_df(spark, n=20_000, parts=4):
    return spark.range(0, n, numPartitions=parts).selectExpr(
        "id", "id * 7 as a", "cast(id as double) / 3 as b", "concat('row-', cast(id as string)) as s")


def parts_of(catalog, cid):
    with Catalog(catalog).read() as con:
        return queries.partitions(con, cid)


def events_of(catalog, cid):
    with Catalog(catalog).read() as con:
        return queries.events(con, cid)


def assert_same(df, ds):
    result = check(spark_to_arrow(df), read_all(ds))
    assert result.ok, str(result)


@pytest.fixture
def catalog(tmp_path):
    return str(tmp_path / "catalog.duckdb")


@pytest.mark.core
def test_content_equals_spark_row_by_row(spark, catalog):
    df = make_df(spark)
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog, name="basic")
    assert ds.count() == 20_000
    assert_same(df, ds)
    cid = ftbridge.conversion_id(ds)
    parts = parts_of(catalog, cid)
    assert [p["partition_id"] for p in parts] == [0, 1, 2, 3]
    assert all(p["state"] == "healthy" for p in parts)
    for p in parts:
        assert os.stat(p["path"]).st_mode & 0o777 == 0o600
        assert os.stat(os.path.dirname(p["path"])).st_mode & 0o777 == 0o700
    kinds = [e["kind"] for e in events_of(catalog, cid)]
    assert kinds.count("created") == 1 and kinds.count("read") == 4
    with Catalog(catalog).read() as con:
        conv = queries.conversion(con, cid)
    assert conv["name"] == "basic" and conv["total_rows"] == 20_000 and conv["status"] == "active"
    assert conv["plan_hash"] and "Range" in conv["plan_text"]


def test_read_blocks_follow_ray_datas_target_block_size(spark, catalog):
    """A materialized conversion's blocks follow DataContext.target_max_block_size as it was when
    the Dataset was made: with the default (128 MiB) every partition is one block, read by a task
    on its file's node; with a target a third of a partition's bytes, every partition is cut
    into three runs or more of about equal rows (views of the checked file), in order; with a
    target below one row's bytes, every row is a block."""
    df = make_df(spark, n=40_000, parts=4)
    whole = ftbridge.from_spark_recoverable(df, catalog=catalog, name="default-blocks")
    tables = ray.get(whole.to_arrow_refs())
    assert [t.num_rows for t in tables] == [10_000] * 4
    partition_bytes = min(t.nbytes for t in tables)
    context = ray.data.DataContext.get_current()
    default = context.target_max_block_size
    context.target_max_block_size = partition_bytes // 3
    try:
        small = ftbridge.from_spark_recoverable(df, catalog=catalog, name="small-blocks")
        context.target_max_block_size = 1  # more pieces than rows: one block per row, no more
        rows = ftbridge.from_spark_recoverable(make_df(spark, n=8, parts=4), catalog=catalog, name="row-blocks")
    finally:
        context.target_max_block_size = default
    assert [t.column("id").to_pylist() for t in ray.get(rows.to_arrow_refs())] == [[i] for i in range(8)]
    ftbridge.release(rows)
    tables = ray.get(small.to_arrow_refs())
    assert len(tables) >= 12, [t.num_rows for t in tables]
    assert max(t.num_rows for t in tables) - min(t.num_rows for t in tables) <= 10_000 // 3, [t.num_rows for t in tables]
    assert pa.concat_tables(tables).column("id").to_pylist() == list(range(40_000))
    assert ray.data.DataContext.get_current().target_max_block_size == default
    ftbridge.release(small)
    ftbridge.release(whole)


def test_jvm_and_python_spill_writers_write_the_same_bytes(spark, catalog, monkeypatch):
    from ftbridge.adapters.spark import jvm_class
    from ftbridge.cluster.jars import SPILL_WRITER_CLASS

    assert jvm_class(spark.sparkContext, SPILL_WRITER_CLASS) is not None, "the JVM spill writer's jar is not loaded"
    df = spark.range(0, 3000, numPartitions=4).where("id < 1500 or id >= 2900").selectExpr(
        "id", "named_struct('x', id, 'y', cast(id as string)) as st", "array(id, null) as xs",
        "map(cast(id as string), id) as m", "timestamp_micros(id * 1000003) as ts",
        "cast(id / 7 as decimal(20, 4)) as d", "case when id % 3 = 0 then null else concat('v', id) end as s")
    by_jvm = ftbridge.from_spark_recoverable(df, catalog=catalog)
    monkeypatch.setenv("FTBRIDGE_SPILL_WRITER", "python")
    by_python = ftbridge.from_spark_recoverable(df, catalog=catalog)
    jvm_parts = parts_of(catalog, ftbridge.conversion_id(by_jvm))
    py_parts = parts_of(catalog, ftbridge.conversion_id(by_python))
    assert len(jvm_parts) == len(py_parts) == 4 and jvm_parts[2]["num_rows"] == 0  # an empty partition too
    for a, b in zip(jvm_parts, py_parts):
        assert a["checksum"].startswith("xxh64:") and a["path"] != b["path"]
        assert (a["num_rows"], a["num_bytes"], a["checksum"]) == (b["num_rows"], b["num_bytes"], b["checksum"])
        with open(a["path"], "rb") as fa, open(b["path"], "rb") as fb:
            assert fa.read() == fb.read()
    assert_same(df, by_jvm)
    assert_same(df, by_python)
    # A file the JVM wrote, rebuilt by the Python writer, must pass the original checksum.
    cid = ftbridge.conversion_id(by_jvm)
    os.remove(jvm_parts[1]["path"])
    assert_same(df, ftbridge.open_recoverable(cid, catalog=catalog))
    assert parts_of(catalog, cid)[1]["rebuilt_count"] == 1


def test_batch_settings_are_recorded_and_reapplied_for_rebuilds(spark, catalog, tmp_path):
    from pyspark import StorageLevel

    from ftbridge.convert.spill.batches import ArrowBatches, BatchSettings
    from ftbridge.convert.spill.target import SpillTarget

    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    spark.conf.set(key, "700")
    try:
        ds = ftbridge.from_spark_recoverable(make_df(spark), catalog=catalog)
    finally:
        spark.conf.unset(key)
    cid = ftbridge.conversion_id(ds)
    with Catalog(catalog).read() as con:
        settings = BatchSettings.from_json(queries.conversion(con, cid)["spill_format"])
    assert settings.batch_rows == 700 and settings.time_zone == spark.conf.get("spark.sql.session.timeZone")
    # What a recipe does in another session: apply the recorded settings, get the same bytes.
    batches = ArrowBatches(make_df(spark), StorageLevel.NONE, settings)
    assert spark.conf.get(key) == "10000"  # the session's own setting is back
    again = sorted((spill_metadata(m) for m in batches.spill_rdd(SpillTarget(str(tmp_path), False), cid).collect()),
                   key=lambda m: m["partition_id"])
    assert [m["checksum"] for m in again] == [p["checksum"] for p in parts_of(catalog, cid)]
    other = ArrowBatches(make_df(spark), StorageLevel.NONE)  # the session's settings: other batches, other bytes
    assert other.settings.batch_rows == 10000
    first = spill_metadata(other.spill_rdd(SpillTarget(str(tmp_path / "o"), False), cid).collect()[0])
    assert first["checksum"] != again[0]["checksum"] and first["num_rows"] == again[0]["num_rows"]


@pytest.mark.core
def test_executors_hold_every_cpu_and_conversion_still_finishes(spark, catalog):
    # The policy: executors may take every CPU; ftbridge's own tasks ask for none.
    head_cpus = ray.cluster_resources().get("CPU", 0)
    assert ray.available_resources().get("CPU", 0) <= head_cpus - 2
    df = make_df(spark, 5000, 2)
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog)
    result = check(spark_to_arrow(df), read_all(ds))
    assert result.ok, str(result)


@pytest.mark.core
def test_deleted_spill_file_is_rebuilt_from_spark(spark, catalog):
    df = make_df(spark)
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog)
    cid = ftbridge.conversion_id(ds)
    victim = parts_of(catalog, cid)[2]
    os.remove(victim["path"])
    ds2 = ftbridge.open_recoverable(cid, catalog=catalog)
    assert_same(df, ds2)
    after = parts_of(catalog, cid)[2]
    assert after["state"] == "healthy" and after["rebuilt_count"] == 1 and os.path.exists(after["path"])
    kinds = [(e["kind"], e["partition_id"]) for e in events_of(catalog, cid)]
    assert ("spill_missing", 2) in kinds and ("rebuilt_from_spark", 2) in kinds


def test_a_file_lost_before_the_first_read_is_rebuilt_after_its_record_lands(spark, catalog, monkeypatch):
    """Reads run while the spill job writes the other partitions, and the record is committed
    after the job. A read that finds its file gone asks for a rebuild, which waits until the
    record is in: here the file is deleted as soon as its task reports it, before its read, and
    the record is sent a second late; the catalog still ends up with the rebuilt file (an update
    sent first would match no row and be lost: rebuilt_count would stay 0)."""
    from ftbridge.convert import conversion
    from ftbridge.lineage.writer import CatalogClient

    real_spill, real_soon = conversion.spill_all, CatalogClient.record_conversion_soon
    lost = {}

    def spill_losing_one(batches, target, cid, on_written):
        def lose_then_read(partitions):
            for p in partitions:
                if p["partition_id"] == 2:
                    lost.update(p)
                    os.remove(p["path"])
            on_written(partitions)
        return real_spill(batches, target, cid, on_written=lose_then_read)

    class Late:
        def __init__(self, client, args):
            self.sent: dict = {}
            self.timer = threading.Timer(1.0, lambda: self.sent.update(pending=real_soon(client, *args)))
            self.timer.start()

        def wait(self, timeout_s=None):
            self.timer.join()
            self.sent["pending"].wait(timeout_s)

    monkeypatch.setattr(conversion, "spill_all", spill_losing_one)
    monkeypatch.setattr(CatalogClient, "record_conversion_soon", lambda self, *args: Late(self, args))
    df = make_df(spark)
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog)
    assert_same(df, ds)
    cid = ftbridge.conversion_id(ds)
    after = parts_of(catalog, cid)[2]
    assert after["state"] == "healthy" and after["rebuilt_count"] == 1 and os.path.exists(after["path"])
    assert after["checksum"] == lost["checksum"]
    kinds = [(e["kind"], e["partition_id"]) for e in events_of(catalog, cid)]
    assert ("spill_missing", 2) in kinds and ("rebuilt_from_spark", 2) in kinds and ("created", None) in kinds


@pytest.mark.core
def test_partitions_are_read_while_the_spill_job_writes_the_rest(spark, catalog, tmp_path):
    """The spill job hands each partition's file over as its task ends, and its read starts then:
    here the last partition's Spark task waits (bounded) until the driver has seen another
    partition's read task return, which only happens if reads run during the job. Rows exact."""
    import logging

    go, went = tmp_path / "go", tmp_path / "went"

    def rows(index, _):
        if index == 3:
            deadline = time.monotonic() + 60
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if go.exists():
                went.touch()  # so the read was seen while this task still ran
        yield from ((i, f"row-{i}", index) for i in range(index * 1000, (index + 1) * 1000))

    df = spark.createDataFrame(spark.sparkContext.parallelize(range(4), 4).mapPartitionsWithIndex(rows),
                               "id long, s string, part int")
    said: list[str] = []

    class ReadSeen(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())
            if "read while its spill job runs" in record.getMessage():
                go.touch()

    logger = logging.getLogger("ftbridge.convert.conversion")
    handler, level = ReadSeen(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        ds = ftbridge.from_spark_recoverable(df, catalog=catalog)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    early = [m for m in said if "read while its spill job runs" in m]
    assert early and went.exists(), said  # the fourth task went on only once another partition was read
    line = next(m for m in said if "partitions read during it" in m)
    assert int(line.split("(")[1].split(" ")[0]) >= 1, line
    assert_same(df, ds)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_spill_file_is_detected_and_rebuilt(spark, catalog, damage):
    df = make_df(spark)
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog)
    cid = ftbridge.conversion_id(ds)
    victim = parts_of(catalog, cid)[1]
    with open(victim["path"], "r+b") as f:
        if damage == "flip":
            f.seek(victim["num_bytes"] // 2)
            byte = f.read(1)
            f.seek(victim["num_bytes"] // 2)
            f.write(bytes([byte[0] ^ 0xFF]))
        else:
            f.truncate(victim["num_bytes"] // 3)
    assert_same(df, ftbridge.open_recoverable(cid, catalog=catalog))
    kinds = [(e["kind"], e["partition_id"]) for e in events_of(catalog, cid)]
    assert ("checksum_mismatch", 1) in kinds and ("rebuilt_from_spark", 1) in kinds


def test_two_conversions_at_once(spark, catalog):
    import threading

    dfs = [make_df(spark, 8000, 2), make_df(spark, 6000, 3).selectExpr("id", "s")]
    out = {}
    threads = [threading.Thread(target=lambda i=i: out.setdefault(i, ftbridge.from_spark_recoverable(
        dfs[i], catalog=catalog, name=f"c{i}"))) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert set(out) == {0, 1}
    for i in range(2):
        assert_same(dfs[i], out[i])
    assert ftbridge.conversion_id(out[0]) != ftbridge.conversion_id(out[1])


def _random_df(spark):
    import random

    from pyspark.sql.functions import udf

    noise = udf(lambda: random.random(), "double").asNondeterministic()
    return spark.range(0, 2000, numPartitions=2).withColumn("r", noise())


def test_nondeterministic_plan_is_refused(spark, catalog):
    df = _random_df(spark)
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog,
                                         storage_level=__import__("pyspark").StorageLevel.NONE)
    cid = ftbridge.conversion_id(ds)
    os.remove(parts_of(catalog, cid)[0]["path"])
    with pytest.raises(NonDeterministicRebuildError, match="not deterministic"):
        ftbridge.open_recoverable(cid, catalog=catalog)
    assert parts_of(catalog, cid)[0]["state"] == "lost"
    assert "rebuild_refused" in [e["kind"] for e in events_of(catalog, cid)]


def test_nondeterministic_allowed_when_asked(spark, catalog):
    df = _random_df(spark)
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog, allow_nondeterministic=True,
                                         storage_level=__import__("pyspark").StorageLevel.NONE)
    cid = ftbridge.conversion_id(ds)
    first = _by_id(read_all(ds))
    os.remove(parts_of(catalog, cid)[0]["path"])
    again = _by_id(read_all(ftbridge.open_recoverable(cid, catalog=catalog)))
    assert list(again) == list(range(2000))  # every id once
    assert all(again[i] == first[i] for i in range(1000, 2000))  # partition 1: its file, unchanged
    assert any(again[i] != first[i] for i in range(1000))  # partition 0: recomputed, a new draw, served
    assert all(0 <= again[i] < 1 for i in range(1000))


def _by_id(table) -> dict:
    return dict(sorted(zip(table.column("id").to_pylist(), table.column("r").to_pylist())))


@pytest.mark.core
def test_unknown_conversion_and_bad_inputs(spark, catalog, tmp_path):
    ftbridge.from_spark_recoverable(make_df(spark, 10, 1), catalog=catalog)
    with pytest.raises(UnknownConversionError, match="ftbridge audit"):
        ftbridge.open_recoverable("0" * 32, catalog=catalog)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:
        spill = "/proc/ftbridge-cannot-write-here"
    else:
        spill = str(locked / "spill")
    with pytest.raises(ConfigurationError, match="not writable"):
        ftbridge.from_spark_recoverable(make_df(spark, 10, 1), spill_dir=spill, catalog=catalog)


def test_unsupported_type_fails_before_any_work(spark, catalog):
    df = spark.sql("SELECT 1 AS id, make_interval(1, 2) AS iv")
    with pytest.raises(ConfigurationError, match="'iv'"):
        ftbridge.from_spark_recoverable(df, catalog=catalog)
    assert not os.path.exists(catalog) or not [c for c in _conversions(catalog)]


def _conversions(catalog):
    with Catalog(catalog).read() as con:
        return queries.conversions(con)


def test_release_deletes_files_and_marks_released(spark, catalog):
    ds = ftbridge.from_spark_recoverable(make_df(spark, 1000, 2), catalog=catalog)
    cid = ftbridge.conversion_id(ds)
    paths = [p["path"] for p in parts_of(catalog, cid)]
    read_all(ds)
    # Ray Data keeps a remote function and an actor-method table per Dataset run for the life of
    # the process (~10-30 KiB each run); release drops them, so a long-running driver stays flat.
    assert ray_adapter.ray_data_leftovers() > 0
    assert ftbridge.release(ds) > 0
    assert ray_adapter.ray_data_leftovers() == 0
    assert not any(os.path.exists(p) for p in paths)
    assert {p["state"] for p in parts_of(catalog, cid)} == {"released"}
    with pytest.raises(ConversionReleasedError):
        ftbridge.open_recoverable(cid, catalog=catalog)


def test_durable_spill_dir_uri(spark, catalog, tmp_path):
    df = make_df(spark, 3000, 3)
    ds = ftbridge.from_spark_recoverable(df, spill_dir=f"file://{tmp_path}/durable", catalog=catalog)
    parts = parts_of(catalog, ftbridge.conversion_id(ds))
    assert all(p["path"].startswith(f"{tmp_path}/durable/") for p in parts)
    assert_same(df, ds)


@pytest.mark.core
def test_to_spark_round_trip(spark, catalog):
    """examples/round_trip.py: Spark -> Ray Data transform -> Spark, row by row (ids and content)."""
    back, expected, differ = round_trip.run(spark, catalog=catalog)
    result = check(spark_to_arrow(expected), spark_to_arrow(back))
    assert result.ok and result.rows_read == 2500, str(result)
    assert differ == 0  # the example's own check, in Spark, agrees
    ftbridge.release(back)


def test_new_driver_process_reopens_the_conversion(spark, catalog):
    df = make_df(spark, 4000, 2)
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog)
    cid = ftbridge.conversion_id(ds)
    expected = spark_to_arrow(df)
    code = f"""
import ray, ftbridge, sys
from ftbridge.convert.ops.rowcheck import read_all, content_checksum
ray.init(address="{ray.get_runtime_context().gcs_address}", log_to_driver=False)
ds = ftbridge.open_recoverable("{cid}", catalog="{catalog}")
print("CHECKSUM", content_checksum(read_all(ds), "id"))
"""
    proc = subprocess.run([sys.executable, "-c", code], env=python_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from ftbridge.convert.ops.rowcheck import content_checksum
    assert f"CHECKSUM {content_checksum(expected, 'id')}" in proc.stdout


# A driver whose SparkSession ftbridge did not start: a local cluster with one executor JVM.
FOREIGN_SESSION = r"""
import json, logging, os, sys
import ray, ftbridge
from pyspark.sql import SparkSession
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog

def python_workers():
    # Spark's Python workers (pyspark.daemon) started under this driver, through its JVMs.
    found = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
            p = pid
            while p not in ("0", "1", str(os.getpid())):
                p = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]
        except OSError:
            continue
        found += p == str(os.getpid()) and cmd.split(b"\0")[1:3] == [b"-m", b"pyspark.daemon"]
    return found

logging.basicConfig(format="%(name)s %(levelname)s %(message)s")
logging.getLogger("ftbridge.cluster.jars").setLevel(logging.INFO)
ray.init(address=sys.argv[1], log_to_driver=False)
spark = (SparkSession.builder.master("local-cluster[1,1,1024]").appName("not-ftbridge")
         .config("spark.ui.enabled", "false").getOrCreate())
df = spark.range(0, 40000, numPartitions=4).selectExpr("id", "concat('row-', cast(id as string)) as s")
for writer in ("auto", "python"):
    os.environ["FTBRIDGE_SPILL_WRITER"] = writer
    ds = ftbridge.from_spark_recoverable(df, catalog=sys.argv[2])
    rows_ok = check(spark_to_arrow(df), read_all(ds)).ok
    with Catalog(sys.argv[2]).read() as con:
        recorded = sorted({str(p["node_id"]) for p in queries.partitions(con, ftbridge.conversion_id(ds))})
    alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    workers = python_workers()  # before to_spark, whose reader is a Python mapInArrow
    back = ftbridge.to_spark(ds, spark, catalog=sys.argv[2]) if writer == "auto" else None
    back_ok = check(spark_to_arrow(df), spark_to_arrow(back)).ok if back is not None else None
    print("RESULT " + json.dumps({"writer": writer, "rows_ok": rows_ok, "python_workers": workers,
                                  "nodes": recorded, "alive": alive, "to_spark_ok": back_ok}), flush=True)
    if back is not None:
        ftbridge.release(back)
    ftbridge.release(ds)
# The program ends Ray itself while ftbridge's rebuild service (kept up for this session) polls
# it from a thread: the program goes on (a Ray call of that thread during the shutdown would end
# the process with exit code 1 and no traceback).
ray.shutdown()
print("RAY_SHUT_DOWN", flush=True)
spark.stop()
"""


@pytest.mark.core
def test_a_session_ftbridge_did_not_start_gets_the_jvm_spill_writer(spark, tmp_path):
    """A user's own SparkSession (here a local cluster whose executor is its own JVM) converts
    with the JVM spill writer: ftbridge adds its jar to the running session, so no partition
    crosses into a Spark Python worker; the same frame with FTBRIDGE_SPILL_WRITER=python starts
    them (so the count would see them). Rows exact (ids and content) both ways, and back into
    that session with `to_spark`; then the program's own `ray.shutdown()` leaves it running. The JVM writer
    reports its executor's address, and the files are recorded on the Ray node there when it is
    the only one at that address (the suite's nodes share one address once a test added one)."""
    proc = run_child([sys.executable, "-c", FOREIGN_SESSION, ray.get_runtime_context().gcs_address,
                      str(tmp_path / "foreign.duckdb")], env=python_env(), timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RAY_SHUT_DOWN" in proc.stdout, proc.stderr[-3000:]
    assert "added the JVM spill writer" in proc.stderr, proc.stderr[-3000:]
    runs = {r["writer"]: r for r in (json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines()
                                     if line.startswith("RESULT "))}
    jvm, python = runs["auto"], runs["python"]
    assert jvm["rows_ok"] and python["rows_ok"] and jvm["to_spark_ok"], runs
    assert jvm["python_workers"] == 0 and python["python_workers"] > 0, runs
    assert jvm["nodes"] == (jvm["alive"] if len(jvm["alive"]) == 1 else ["None"]), runs
    assert python["nodes"] == ["None"], runs  # the Python writer reports no address


@pytest.mark.core
def test_failing_spark_job_is_a_conversion_error_naming_the_partition(spark, catalog):
    """A Python error in the user's plan reaches the user as a ConversionError with the partition
    and the original cause, not a Py4J trace; nothing is recorded."""
    from pyspark.sql.functions import udf

    @udf("long")
    def explode_on_77(x):
        if x == 77:
            raise ValueError("row 77 is bad")
        return x

    df = spark.range(0, 100, numPartitions=4).select(explode_on_77("id").alias("id"))
    with pytest.raises(ConversionError) as err:
        ftbridge.from_spark_recoverable(df, catalog=catalog)
    # ids 75..99 are the 4th partition. PySpark 3.5-4.1 carry Spark's "Task 3 in stage ..." text;
    # 4.2+ keep only the Python side of a captured PythonException (then: no partition).
    assert err.value.partition in (3, None), str(err.value)
    assert "row 77 is bad" in str(err.value) and "Py4J" not in str(err.value)
    assert len(str(err.value)) < 1500
    assert err.value.__cause__ is not None


@pytest.mark.core  # the plan's leaves and files come from the JVM (the Spark adapter)
def test_reuse_serves_the_same_plan_over_unchanged_files_and_converts_again_when_they_change(
        spark, catalog, tmp_path, caplog):
    source = str(tmp_path / "source")
    make_df(spark, n=8_000).write.parquet(source)

    def frame():  # the same code in a later job: a new DataFrame of the same plan
        return spark.read.parquet(source).where("a % 3 = 0").selectExpr("id", "a", "s")

    first = ftbridge.from_spark_recoverable(frame(), catalog=catalog, reuse=True)
    cid = ftbridge.conversion_id(first)
    with Catalog(catalog).read() as con:
        assert queries.conversion(con, cid)["reuse_key"], "the conversion recorded no reuse key"
    files = sorted(p["path"] for p in parts_of(catalog, cid))

    again = ftbridge.from_spark_recoverable(frame(), catalog=catalog, reuse=True)
    assert ftbridge.conversion_id(again) == cid
    assert_same(frame(), again)
    with Catalog(catalog).read() as con:
        assert len(queries.conversions(con)) == 1, "reuse ran a new conversion"
    assert sorted(p["path"] for p in parts_of(catalog, cid)) == files
    assert [e["kind"] for e in events_of(catalog, cid)].count("reused") == 1

    # A lost file of a reused conversion is rebuilt by this session's Spark, exactly.
    os.remove(files[1])
    streaming = ftbridge.from_spark_recoverable(frame(), catalog=catalog, reuse=True, materialize=False)
    assert ftbridge.conversion_id(streaming) == cid
    assert_same(frame(), streaming)
    assert ("rebuilt_from_spark", 1) in [(e["kind"], e["partition_id"]) for e in events_of(catalog, cid)]

    # Another file in the source: converted again, and the log says why.
    spark.range(10_000, 10_050).selectExpr("id", "id * 7 as a", "cast(id as double) / 3 as b",
                                           "concat('row-', cast(id as string)) as s").write.mode("append").parquet(source)
    with caplog.at_level("INFO", logger="ftbridge.convert.conversion"):
        changed = ftbridge.from_spark_recoverable(frame(), catalog=catalog, reuse=True)
    assert ftbridge.conversion_id(changed) != cid
    assert_same(frame(), changed)
    assert any("is new since conversion" in r.getMessage() for r in caplog.records), caplog.text

    # Plans whose data the plan does not pin down are never reused.
    caplog.clear()
    with caplog.at_level("INFO", logger="ftbridge.convert.conversion"):
        noisy = [ftbridge.from_spark_recoverable(spark.range(100).selectExpr("id", "rand() as r"), catalog=catalog,
                                                 reuse=True, allow_nondeterministic=True) for _ in range(2)]
        local = [ftbridge.from_spark_recoverable(spark.createDataFrame([(1, "x")], ["k", "v"]), catalog=catalog,
                                                 reuse=True) for _ in range(2)]
    assert len({ftbridge.conversion_id(ds) for ds in noisy + local}) == 4
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "not deterministic" in messages and "neither the plan nor input files identify" in messages
