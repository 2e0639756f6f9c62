"""The public operations API (`ftbridge.audit/show/verify/gc`) on a real DuckDB catalog and real files,
and the CLI's `--json` as the same documents."""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import timedelta

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

import ftbridge
from ftbridge.convert.spill.write import file_checksum
from ftbridge.convert.types import schema_to_b64
from ftbridge.errors import ConfigurationError, UnknownConversionError
from ftbridge.lineage import queries, records
from ftbridge.lineage.catalog import Catalog, now
from ftbridge.lineage.kinds import ConversionStatus, EventKind, PartitionState
from ftbridge.lineage.rows import ConversionRow, PartitionRow
from tests.conftest import cli_in_process

pytestmark = pytest.mark.core
SCHEMA = pa.schema([("id", pa.int64()), ("s", pa.string())])


def recorded_conversion(tmp_path, catalog: str, *, live_driver: bool, n: int = 3) -> tuple[str, list[str]]:
    """A conversion in `catalog` whose n spill files exist with their real sizes and checksums."""
    cid = uuid.uuid4().hex
    root = tmp_path / "spill"
    paths, parts = [], []
    for i in range(n):
        path = root / cid / f"part-{i:05d}.arrow"
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table({"id": list(range(i * 10, i * 10 + 10)), "s": [f"r{i}"] * 10}, schema=SCHEMA)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
            writer.write_table(table)
        checksum, _ = file_checksum(pafs.LocalFileSystem(), str(path), None)
        parts.append(PartitionRow(conversion_id=cid, partition_id=i, path=str(path), node_id="n1", num_rows=10,
                                  num_bytes=path.stat().st_size, checksum=checksum))
        paths.append(str(path))
    conv = ConversionRow(conversion_id=cid, name="ops", created_at=now(), status="active", plan_text="p",
                         plan_hash="h", schema_b64=schema_to_b64(SCHEMA), storage_level="MEMORY_AND_DISK",
                         spill_root=str(root), node_local=False, num_partitions=n, total_rows=10 * n,
                         total_bytes=sum(p.num_bytes for p in parts),
                         driver_host=socket.gethostname() if live_driver else "elsewhere",
                         driver_pid=os.getpid() if live_driver else None)
    with Catalog(catalog).write() as con:
        records.insert_conversion(con, conv, parts)
    return cid, paths


def test_verify_audit_and_show_are_typed_recorded_and_what_the_cli_prints(tmp_path):
    catalog = str(tmp_path / "c.duckdb")
    live, live_paths = recorded_conversion(tmp_path, catalog, live_driver=True)
    orphan, orphan_paths = recorded_conversion(tmp_path, catalog, live_driver=False)

    reports = ftbridge.verify(catalog=catalog)  # every active conversion
    assert {r.id: r.health for r in reports} == {live: ftbridge.Health.HEALTHY, orphan: ftbridge.Health.HEALTHY}

    os.remove(live_paths[1])
    with open(orphan_paths[2], "r+b") as f:  # same size, other bytes: only the checksum can tell
        data = bytearray(f.read())
        middle = len(data) // 2
        data[middle:middle + 4] = bytes(b ^ 0x5A for b in data[middle:middle + 4])
        f.seek(0)
        f.write(data)
    (degraded,) = ftbridge.verify(live, catalog=catalog)
    (lost,) = ftbridge.verify(orphan[:10], catalog=catalog)
    assert (degraded.health, degraded.exit_code, degraded.rebuildable, degraded.bad) == (
        ftbridge.Health.DEGRADED, 1, True, 1)
    assert [(p.partition, p.state) for p in degraded.partitions] == [
        (0, PartitionState.HEALTHY), (1, PartitionState.MISSING), (2, PartitionState.HEALTHY)]
    assert (lost.health, lost.exit_code, lost.rebuildable) == (ftbridge.Health.DATA_LOST, 2, False)
    assert "checksum" in lost.partitions[2].detail and lost.partitions[2].state == PartitionState.CORRUPT
    with Catalog(catalog).read() as con:  # the results are in the catalog, not only in the report
        assert queries.partitions(con, live)[1]["state"] == PartitionState.MISSING
        assert [e["partition_id"] for e in queries.events(con, orphan) if e["kind"] == EventKind.VERIFY_FAILED] == [2]

    doc = degraded.to_dict()
    assert json.loads(degraded.to_json()) == doc
    assert doc["health"] == "degraded" and doc["exit_code"] == 1 and doc["partitions"][1]["state"] == "missing"
    cli = cli_in_process(["verify", live, "--json", "--catalog", catalog])
    assert cli.returncode == 1 and json.loads(cli.stdout)["conversions"][0]["partitions"] == doc["partitions"]

    audit = ftbridge.audit(catalog=catalog)
    by_id = {c.id: c for c in audit.conversions}
    assert by_id[live].partitions == ftbridge.lineage.reports.PartitionHealth(healthy=2, degraded=1)
    assert by_id[orphan].partitions.degraded == 1 and by_id[orphan].rows == 30 and audit.runs == []
    assert json.loads(cli_in_process(["audit", "--json", "--catalog", catalog]).stdout) == json.loads(audit.to_json())

    shown = ftbridge.show(live[:12], catalog=catalog)
    assert isinstance(shown, ftbridge.ConversionDetail)
    assert shown.conversion["conversion_id"] == live and [(f.name, f.type) for f in shown.schema] == [
        ("id", "int64"), ("s", "string")]
    assert [p["state"] for p in shown.partitions] == ["healthy", "missing", "healthy"]
    assert {"verify_ok", "verify_failed"} <= {e["kind"] for e in shown.events}
    assert json.loads(cli_in_process(["show", live, "--json", "--catalog", catalog]).stdout) == json.loads(
        shown.to_json())
    with pytest.raises(UnknownConversionError, match="no run is named"):
        ftbridge.show("nothing-like-it", catalog=catalog)


def test_gc_frees_released_files_and_takes_ages_as_text_or_timedelta(tmp_path):
    catalog = str(tmp_path / "c.duckdb")
    cid, paths = recorded_conversion(tmp_path, catalog, live_driver=False)
    kept, kept_paths = recorded_conversion(tmp_path, catalog, live_driver=False)
    size = sum(os.path.getsize(p) for p in paths)
    with Catalog(catalog).write() as con:
        records.set_conversion_status(con, cid, ConversionStatus.RELEASED)
    dry = ftbridge.gc(dry_run=True, catalog=catalog)
    assert (dry.dry_run, dry.bytes_freed, dry.files) == (True, size, 3) and all(map(os.path.exists, paths))
    done = ftbridge.gc(catalog=catalog, events_older_than=timedelta(0))
    assert (done.bytes_freed, [c.id for c in done.conversions], done.conversions[0].reason) == (size, [cid], "released")
    assert not any(map(os.path.exists, paths)) and all(map(os.path.exists, kept_paths))
    assert done.catalog is not None and done.catalog.conversions == 1 and done.to_dict()["catalog"]["dry_run"] is False
    expired = ftbridge.gc(older_than="0s", catalog=catalog)
    assert [c.id for c in expired.conversions] == [kept] and not any(map(os.path.exists, kept_paths))
    with pytest.raises(ConfigurationError, match="use a number and one of s, m, h, d, w"):
        ftbridge.gc(older_than="seven", catalog=catalog)
