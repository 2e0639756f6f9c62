"""Datasets outlive Spark; with Spark gone, a lost partition is a fast, clear error."""

from __future__ import annotations

import os

import pytest

import ftbridge
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from ftbridge.errors import PartitionLostError
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog


def test_stop_spark_keeps_or_cleans_data(ray_cluster, tmp_path):
    catalog = str(tmp_path / "c.duckdb")
    spark = ftbridge.init_spark("after-stop", num_executors=2, executor_cores=1, executor_memory="512MB")
    df = spark.range(0, 10_000, numPartitions=4).selectExpr("id", "id % 13 as m")
    expected = spark_to_arrow(df)
    kept = ftbridge.from_spark_recoverable(df, catalog=catalog)
    kept_id = ftbridge.conversion_id(kept)
    dropped = ftbridge.from_spark_recoverable(df.where("m > 3"), catalog=catalog)
    dropped_id = ftbridge.conversion_id(dropped)
    ftbridge.release(dropped)
    ftbridge.stop_spark(cleanup_data=False)

    assert check(expected, read_all(kept)).ok
    reopened = ftbridge.open_recoverable(kept_id, catalog=catalog)
    assert check(expected, read_all(reopened)).ok

    with Catalog(catalog).read() as con:
        parts = queries.partitions(con, kept_id)
    os.remove(parts[3]["path"])
    with pytest.raises(PartitionLostError) as err:  # fails fast: no Spark can rebuild it, nothing waits
        ftbridge.open_recoverable(kept_id, catalog=catalog)
    assert err.value.partition == 3 and err.value.conversion_id == kept_id
    assert kept_id in str(err.value) and "ftbridge recover" in str(err.value)
    with Catalog(catalog).read() as con:
        kinds = [(e["kind"], e["partition_id"]) for e in queries.events(con, kept_id)]
        assert ("unrecoverable", 3) in kinds
        assert queries.partitions(con, kept_id)[3]["state"] == "lost"
        assert queries.conversion(con, dropped_id)["status"] == "released"


def test_stop_spark_cleanup_deletes_spill(ray_cluster, tmp_path):
    catalog = str(tmp_path / "c.duckdb")
    spark = ftbridge.init_spark("cleanup", num_executors=1, executor_cores=1, executor_memory="512MB")
    ds = ftbridge.from_spark_recoverable(spark.range(0, 1000, numPartitions=2), catalog=catalog)
    cid = ftbridge.conversion_id(ds)
    with Catalog(catalog).read() as con:
        paths = [p["path"] for p in queries.partitions(con, cid)]
    ftbridge.stop_spark(cleanup_data=True)
    assert not any(os.path.exists(p) for p in paths)
    with Catalog(catalog).read() as con:
        assert queries.conversion(con, cid)["status"] == "released"
