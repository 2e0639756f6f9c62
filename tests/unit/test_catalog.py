"""The DuckDB catalog: schema versions, bad files, bulk inserts, concurrent readers, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import duckdb
import pytest

from ftbridge.chaos.faults import FaultLog
from ftbridge.chaos.runner import audit_gaps
from ftbridge.errors import CatalogCorruptError, CatalogError, CatalogVersionError, UnknownConversionError
from ftbridge.lineage import queries, records
from ftbridge.lineage.audit import audit, recovery_times, time_lost
from ftbridge.lineage.catalog import Catalog, default_catalog_path, now
from ftbridge.lineage.kinds import EventKind
from ftbridge.lineage.kinds import RunEventKind as RK
from ftbridge.lineage.rows import (
    ROWS,
    ConversionRow,
    EventRow,
    PartitionRow,
    RunRow,
    RunUpdate,
    new_event,
    new_run_event,
)
from ftbridge.lineage.schema import SCHEMA_VERSION
from tests.conftest import python_env


def conv_record(cid=None, n=3):
    cid = cid or uuid.uuid4().hex
    conv = ConversionRow(conversion_id=cid, name="t", created_at=now(), status="active", plan_text="p",
                         plan_hash="h", schema_b64="", storage_level="MEMORY_AND_DISK", spill_root="/tmp/x",
                         node_local=True, num_partitions=n, total_rows=10 * n, total_bytes=100 * n)
    parts = [PartitionRow(conversion_id=cid, partition_id=i, path=f"/tmp/x/{cid}/part-{i:05d}.arrow", node_id="n1",
                          num_rows=10, num_bytes=100, checksum=f"c{i}") for i in range(n)]
    return conv, parts


def test_default_path_order(tmp_path, monkeypatch):
    monkeypatch.delenv("FTBRIDGE_CATALOG", raising=False)
    assert default_catalog_path().endswith(".ftbridge/catalog.duckdb")
    monkeypatch.setenv("FTBRIDGE_CATALOG", str(tmp_path / "env.duckdb"))
    assert default_catalog_path() == str(tmp_path / "env.duckdb")
    assert default_catalog_path(tmp_path / "arg.duckdb") == str(tmp_path / "arg.duckdb")


def test_create_migrate_and_record(tmp_path):
    cat = Catalog(tmp_path / "c.duckdb")
    conv, parts = conv_record()
    with cat.write() as con:
        records.insert_conversion(con, conv, parts)
        records.insert_conversion(con, conv, parts)  # a replayed call leaves the same rows
    assert cat.schema_version() == SCHEMA_VERSION
    with cat.read() as con:
        assert queries.conversion(con, conv.conversion_id)["name"] == "t"
        assert queries.conversion(con, conv.conversion_id[:8])["conversion_id"] == conv.conversion_id
        assert len(queries.partitions(con, conv.conversion_id)) == 3
        with pytest.raises(UnknownConversionError):
            queries.conversion(con, "nope")


def test_version_1_catalog_is_readable_then_migrated(tmp_path):
    from ftbridge.lineage.schema import MIGRATIONS

    path = tmp_path / "v1.duckdb"
    conv, parts = conv_record()
    conv.spill_root = "s3://AKID:SECRET@bucket/spill?region=eu-west-1&secret_key=SECRET2"
    with duckdb.connect(str(path)) as con:  # a catalog as version 1 of ftbridge left it
        for statement in MIGRATIONS[1]:
            con.execute(statement)
        con.execute("INSERT INTO ftbridge_meta VALUES ('schema_version', '1')")
        for part in parts:
            part.updated_at = now()
        for row in [conv, *parts]:  # the columns version 1 had
            cols = [c[0] for c in con.execute(f"DESCRIBE {row.TABLE}").fetchall()]
            con.execute(f"INSERT INTO {row.TABLE} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [getattr(row, c) for c in cols])
    cat = Catalog(path)
    with cat.read() as con:  # readers never migrate
        assert queries.conversion(con, conv.conversion_id).get("spill_format") is None
        assert queries.runs(con) == [] and queries.run(con, "anything") is None  # no runs tables yet
        assert queries.leftovers(con) == []  # no leftover_files table before version 6
    assert cat.schema_version() == 1
    with cat.write() as con:
        pass
    assert cat.schema_version() == SCHEMA_VERSION == 8
    with cat.read() as con:
        assert queries.runs(con) == []  # version 5: the training-run tables exist, empty
        assert queries.leftovers(con) == []  # version 6: the leftover-files table exists, empty
    with cat.read() as con:
        old = queries.conversion(con, conv.conversion_id)
        assert old["spill_format"] is None and old["num_partitions"] == 3
        assert old["direction"] == "spark_to_ray"  # what every conversion before version 3 was
        assert "SECRET" not in old["spill_root"] and "AKID" not in old["spill_root"]  # scrubbed by version 4
        assert old["spill_root"].startswith("s3://bucket/spill?region=eu-west-1")
        assert len(queries.partitions(con, conv.conversion_id)) == 3


def test_events_are_idempotent_and_feed_time_to_recover(tmp_path):
    from datetime import timedelta

    cat = Catalog(tmp_path / "c.duckdb")
    conv, parts = conv_record()
    t0 = now()
    evs = [
        EventRow(event_id="a", conversion_id=conv.conversion_id, partition_id=1, kind=EventKind.SPILL_MISSING,
                 started_at=t0, finished_at=t0, duration_s=0.0),
        EventRow(event_id="b", conversion_id=conv.conversion_id, partition_id=1, kind=EventKind.REBUILT_FROM_SPARK,
                 started_at=t0 + timedelta(seconds=1), finished_at=t0 + timedelta(seconds=3), duration_s=2.0),
    ]
    with cat.write() as con:
        records.insert_conversion(con, conv, parts)
        records.insert_events(con, evs)
        records.insert_events(con, evs)
    with cat.read() as con:
        events = queries.events(con, conv.conversion_id)
        assert len(events) == 2
        assert recovery_times(events) == [3.0]
        (row,) = audit(con)
    assert row.time_to_recover_s.to_dict() == {"median": 3.0, "worst": 3.0}
    assert row.partitions.healthy == 3 and row.rebuilt == 1


def test_not_a_duckdb_file(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CatalogCorruptError, match="not a readable ftbridge catalog"):
        with Catalog(bad).read():
            pass
    assert bad.read_bytes().startswith(b"this is not")  # nothing was overwritten


def test_foreign_duckdb_file(tmp_path):
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE stuff (a INT)")
    con.close()
    with pytest.raises(CatalogCorruptError, match="not an ftbridge catalog"):
        with Catalog(path).write():
            pass


def test_newer_schema_version_is_refused(tmp_path):
    cat = Catalog(tmp_path / "c.duckdb")
    with cat.write() as con:
        con.execute("UPDATE ftbridge_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(CatalogVersionError, match="999"):
        with cat.read():
            pass


def test_missing_catalog_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="no catalog at"):
        with Catalog(tmp_path / "none.duckdb").read():
            pass


def test_reader_in_another_process_while_writer_works(tmp_path):
    """A second process reads consistent snapshots while this one commits in a loop."""
    cat = Catalog(tmp_path / "c.duckdb")
    with cat.write():
        pass
    reader = textwrap.dedent(f"""
        import time
        from ftbridge.lineage.catalog import Catalog
        from ftbridge.lineage import queries
        seen = 0
        end = time.time() + 4
        while time.time() < end:
            with Catalog({str(cat.path)!r}).read() as con:
                convs = queries.conversions(con)
                for c in convs:
                    assert len(queries.partitions(con, c["conversion_id"])) == 5, "torn transaction"
                seen = max(seen, len(convs))
        print("SEEN", seen)
    """)
    proc = subprocess.Popen([sys.executable, "-c", reader], env=python_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    written = 0
    end = time.time() + 3
    while time.time() < end:
        conv, parts = conv_record(n=5)
        with cat.write() as con:
            records.insert_conversion(con, conv, parts)
        written += 1
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert int(out.split()[-1]) > 0 and written > 0


def test_kill_9_of_writer_loses_no_committed_record(tmp_path):
    cat = Catalog(tmp_path / "c.duckdb")
    writer = textwrap.dedent(f"""
        import sys, uuid
        from ftbridge.lineage.catalog import Catalog
        from ftbridge.lineage import records
        from ftbridge.lineage.rows import new_event
        cat = Catalog({str(cat.path)!r})
        i = 0
        while True:
            ev = new_event("c", i, "read")
            with cat.write() as con:
                records.insert_events(con, [ev])
            print(i, flush=True)
            i += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], env=python_env(), stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    deadline = time.time() + 60
    while acknowledged < 30 and time.time() < deadline:
        acknowledged = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with cat.read() as con:
        got = {r[0] for r in con.execute("SELECT partition_id FROM events").fetchall()}
    assert set(range(acknowledged + 1)) <= got


def test_retention_prunes_only_long_released_history_and_shrinks_the_file(tmp_path):
    from datetime import timedelta

    from ftbridge.lineage.retention import file_bytes, prune

    cat = Catalog(tmp_path / "c.duckdb")
    ids = {"old": [], "young": [], "active": []}
    for i in range(90):
        conv, parts = conv_record()
        kind = ("old", "young", "active")[i % 3]
        with cat.write() as con:
            records.insert_conversion(con, conv, parts)
            # Long details that do not compress (DuckDB stores "x" * 2000 in a few bytes): what is
            # pruned must outweigh DuckDB's 256 KiB blocks, which every table (also the empty
            # training-run tables) keeps at least one of, whatever was checkpointed before.
            records.insert_events(con, [new_event(conv.conversion_id, p % 3, EventKind.READ,
                                                  detail=os.urandom(1000).hex())
                                        for p in range(20)])
            if kind != "active":
                records.set_conversion_status(con, conv.conversion_id, "released", "released")
            if kind == "old":
                con.execute("UPDATE conversions SET released_at = released_at - INTERVAL 40 DAY "
                            "WHERE conversion_id = ?", [conv.conversion_id])
        ids[kind].append(conv.conversion_id)
    runs = {}
    for kind, ended in (("old", now() - timedelta(days=40)), ("young", now() - timedelta(days=1)), ("active", None)):
        rid = uuid.uuid4().hex
        run = RunRow(run_id=rid, name=kind, started_at=now() - timedelta(days=41), status="finished",
                     finished_at=ended)
        with cat.write() as con:
            records.insert_run(con, run, {"train": ids[kind][0]}, [new_run_event(rid, "report") for _ in range(5)])
        runs[kind] = rid
    dry = prune(cat, timedelta(days=30), dry_run=True)
    assert (dry.conversions, dry.partitions_removed, dry.events_removed) == (30, 90, 600)
    assert dry.run_events_removed == 5  # only the run that ended 40 days ago
    before = file_bytes(cat.path)
    done = prune(cat, timedelta(days=30))
    assert (done.partitions_removed, done.events_removed) == (90, 600)
    assert done.catalog_bytes_after < before
    with cat.read() as con:
        for kind, expect_parts, expect_events in (("old", 0, 0), ("young", 3, 20), ("active", 3, 20)):
            for cid in ids[kind]:
                assert len(queries.partitions(con, cid)) == expect_parts
                assert len(queries.events(con, cid)) == expect_events
        assert len(queries.conversions(con)) == 90  # the conversions themselves stay for the audit
        assert {k: len(queries.run_events(con, rid)) for k, rid in runs.items()} == {"old": 0, "young": 5, "active": 5}
        assert len(queries.runs(con)) == 3 and queries.run_inputs(con, runs["old"]) == {"train": ids["old"][0]}
    assert prune(cat, timedelta(days=30)).partitions_removed == 0
    with cat.write() as con:  # still a working catalog after the swap
        records.insert_conversion(con, *conv_record())


def test_training_run_summary_and_timeline(tmp_path):
    """A run's counters and time lost come from its recorded events; recovery events of its input
    inside the run's window join its timeline, those outside do not."""
    from datetime import timedelta

    from ftbridge.lineage.audit import run_record, runs_audit


    cat = Catalog(tmp_path / "c.duckdb")
    conv, parts = conv_record()
    cid, rid = conv.conversion_id, uuid.uuid4().hex
    t0 = time.time() - 1000
    run = RunRow(run_id=rid, name="nightly", trainer="XGBoostTrainer", started_at=now() - timedelta(seconds=1000),
                 status="running")
    # progress every 10 s; a worker fails in the third interval, which then takes 25 s (15 s lost)
    evs = [new_run_event(rid, RK.STARTED, t0), new_run_event(rid, RK.REPORT, t0 + 10, epoch=0, checkpoint="/c/0"),
           new_run_event(rid, RK.REPORT, t0 + 20, epoch=1, checkpoint="/c/1"),
           new_run_event(rid, RK.WORKER_FAILED, t0 + 24, detail="rank 1: node died"),
           new_run_event(rid, RK.REPORT, t0 + 45, epoch=2, checkpoint="/c/2"),
           new_run_event(rid, RK.REPORT, t0 + 55, epoch=3)]
    with cat.write() as con:
        records.insert_conversion(con, conv, parts)
        records.insert_run(con, run, {"train": cid}, evs[:1])
        records.insert_run(con, run, {"train": cid}, evs[:1])  # replayed: same rows
        records.insert_run_events(con, evs[1:])
        records.insert_run_events(con, evs[1:])  # replayed: same rows
        records.update_run(con, rid, RunUpdate(ray_run_id="ray-1"))
        records.update_run(con, rid, RunUpdate(ray_run_id="ray-2"))  # only the first report names it
        records.insert_events(con, [new_event(cid, 1, "spill_missing", t0 + 30), new_event(cid, 1, "rebuilt_from_spark",
                                                                                          t0 + 31)])
        records.insert_events(con, [new_event(cid, 2, "rebuilt_from_spark", t0 - 100)])  # before the run
        records.update_run(con, rid, RunUpdate(status="finished", finished_at=now() - timedelta(seconds=900)))
        records.insert_run_events(con, [new_run_event(rid, RK.FINISHED, t0 + 100)])
    with cat.read() as con:
        assert queries.run(con, rid[:10])["run_id"] == rid
        assert queries.run(con, "nightly")["run_id"] == rid
        assert queries.run(con, "ray-1")["run_id"] == rid
        assert queries.run(con, "no-such-run") is None
        summary, timeline = run_record(con, queries.run(con, rid))
        assert runs_audit(con) == [summary]
    assert summary.inputs == {"train": cid} and summary.ray_run_id == "ray-1"
    assert (summary.epochs_completed, summary.checkpoints, summary.worker_failures) == (4, 3, 1)
    assert (summary.restarts, summary.attempts, summary.status) == (1, 2, "finished")
    assert summary.recovery_events == 2 and summary.rebuilt == 1
    assert summary.time_lost_s == pytest.approx(15.0, abs=0.01)
    kinds = [r.what for r in timeline]
    assert kinds == ["started", "report", "report", "worker_failed", "spill_missing", "rebuilt_from_spark", "report",
                     "report", "finished"]


def test_the_chaos_audit_check_finds_a_corrupted_file_the_catalog_does_not_account_for(tmp_path):
    path = str(tmp_path / "c.duckdb")
    cat = Catalog(path)
    conv, parts = conv_record()
    cid, target = conv.conversion_id, parts[1].path
    with cat.write() as con:
        records.insert_conversion(con, conv, parts)
    log = FaultLog()
    log.add("spill_corrupted", target, mode="truncate")
    log.add("executor_killed", "1234")  # other kinds are not held to this check
    faults = log.to_list()
    assert audit_gaps(path, faults) == [f"{target} (truncate): no detection event in the catalog"]
    with cat.write() as con:  # a detection of another file does not count
        records.insert_events(con, [new_event(cid, 0, EventKind.CHECKSUM_MISMATCH, detail=parts[0].path)])
    assert len(audit_gaps(path, faults)) == 1
    with cat.write() as con:
        records.insert_events(con, [new_event(cid, 1, EventKind.CHECKSUM_MISMATCH, detail=f"{target}: crc differs")])
    assert audit_gaps(path, faults) == [f"{target}: detected (checksum_mismatch) but no rebuild, refusal or loss "
                                        "recorded"]
    with cat.write() as con:  # the rebuild of another partition does not count either
        records.insert_events(con, [new_event(cid, 2, EventKind.REBUILT_FROM_SPARK)])
    assert len(audit_gaps(path, faults)) == 1
    with cat.write() as con:
        records.insert_events(con, [new_event(cid, 1, EventKind.REBUILT_FROM_SPARK)])
    assert audit_gaps(path, faults) == []
    assert audit_gaps(str(tmp_path / "none.duckdb"), faults) == []


def test_the_typed_rows_are_the_migrated_tables_column_for_column(tmp_path):
    cat = Catalog(tmp_path / "c.duckdb")
    with cat.write():
        pass
    with cat.read() as con:
        for cls in ROWS:
            described = [(name, sql) for name, sql, *_ in con.execute(f"DESCRIBE {cls.TABLE}").fetchall()]
            assert described == list(cls.sql_types().items()), cls.__name__
            assert cls.arrow_schema().names == [name for name, _ in described]


def test_a_resumed_failure_costs_what_its_resume_recorded():
    """Time lost: a failure the run went on from mid-epoch costs its resume's lost_s; one without a
    resume costs its interval minus the median clean one (fixed times, no catalog)."""
    from datetime import UTC, datetime

    def ev(kind, t, **kw):
        row = new_run_event("r", kind, t, **kw)
        return {**row.to_dict(), "happened_at": datetime.fromtimestamp(t, UTC)}

    t0 = 1_000_000.0
    clean = [ev(RK.STARTED, t0), ev(RK.REPORT, t0 + 10, epoch=0, position=0.5),
             ev(RK.REPORT, t0 + 20, epoch=0, position=1.0)]
    resumed = [ev(RK.WORKER_FAILED, t0 + 24), ev(RK.RESUMED, t0 + 27, epoch=1, position=0.0, lost_s=7.0),
               ev(RK.REPORT, t0 + 33, epoch=1, position=0.5)]
    plain = [ev(RK.WORKER_FAILED, t0 + 38), ev(RK.REPORT, t0 + 58, epoch=1, position=1.0)]
    assert time_lost(clean + resumed) == pytest.approx(7.0)
    assert time_lost(clean + resumed + plain) == pytest.approx(7.0 + (25 - 10))
    assert time_lost(clean) == 0.0
