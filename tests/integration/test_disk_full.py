"""A spill that fills its disk: a typed error naming node and root, nothing recorded, no litter.

The disk is a real 16 MiB tmpfs mounted for the test (needs root, as on CI).
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import ftbridge
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from ftbridge.convert.spill.job import STRAGGLER_SWEEPS_S
from ftbridge.errors import SpillDiskFullError, TransientError
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:  # a core test that cannot run fails: CI runs as root
        pytest.fail("this test mounts a real 16 MiB tmpfs and needs root; run the suite as root (CI does)")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield str(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _files(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize("writer", [pytest.param("auto", marks=pytest.mark.core), "python"])
def test_disk_full_is_typed_nothing_recorded_and_next_conversion_works(spark, tmp_path, small_disk, monkeypatch,
                                                                       writer):
    monkeypatch.setenv("FTBRIDGE_SPILL_WRITER", writer)
    catalog = str(tmp_path / "catalog.duckdb")
    # ~40 MB of Arrow data in 8 partitions: more than the 16 MiB disk holds.
    big = spark.range(0, 400_000, numPartitions=8).selectExpr(
        "id", "repeat(concat('x', cast(id as string)), 12) as s")
    with pytest.raises(SpillDiskFullError) as info:
        ftbridge.from_spark_recoverable(big, spill_dir=small_disk, catalog=catalog, name="too-big")
    err = info.value
    assert isinstance(err, TransientError)
    assert err.spill_root == small_disk and small_disk in str(err)
    assert err.node_id and err.node_id != "unknown" and err.node_id in str(err)
    assert "no space left on device" in str(err)
    with Catalog(catalog).read() as con:
        assert [c for c in queries.conversions(con) if c["name"] == "too-big"] == []
    assert _files(small_disk) == [], f"partial or unrecorded spill files left: {_files(small_disk)[:10]}"

    small = spark.range(0, 20_000, numPartitions=4).selectExpr("id", "concat('row-', cast(id as string)) as s")
    ds = ftbridge.from_spark_recoverable(small, spill_dir=small_disk, catalog=catalog, name="fits")
    result = check(spark_to_arrow(small), read_all(ds))
    assert result.ok, str(result)
    with Catalog(catalog).read() as con:
        conv = next(c for c in queries.conversions(con) if c["name"] == "fits")
        assert all(p["state"] == "healthy" for p in queries.partitions(con, conv["conversion_id"]))
    ftbridge.release(ds)
    assert [f for f in _files(small_disk) if conv["conversion_id"] in f] == [], "released files left"
    # A Python writer of the failed job whose task Spark had cancelled can still rename its file
    # after the failure was raised; the job's sweeps remove it within their last delay.
    deadline = time.monotonic() + STRAGGLER_SWEEPS_S[-1] + 10
    while _files(small_disk) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _files(small_disk) == [], "a straggler of the failed job left its file past the last sweep"
