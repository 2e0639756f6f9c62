"""Ray -> Spark: block order kept, Arrow all the way, recorded in the catalog, lost staging recovered."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest
import ray
from hypothesis import HealthCheck, given, settings

import ftbridge
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from ftbridge.convert.ops.verify import verify
from ftbridge.errors import ConfigurationError, ConversionError, UnsupportedTypeError
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog
from tests.conftest import SHARED_SPARK
from tests.integration.test_types import random_frames


@pytest.fixture
def catalog(tmp_path):
    return str(tmp_path / "catalog.duckdb")


@pytest.fixture(scope="module", autouse=True)
def ray_cpus(ray_cluster):
    """A node with free CPUs: Ray Data's own tasks here (from_arrow's metadata, range, map_batches)
    ask for CPUs, and the executors hold the head node's (ftbridge's own tasks ask for none)."""
    SHARED_SPARK.get()  # the shared session's executors take the head's CPUs first
    node = ray_cluster.add_node(num_cpus=2)
    ray_cluster.wait_for_nodes()
    yield
    ray_cluster.remove_node(node)


def _ids(df) -> list[int]:
    return [r[0] for r in df.select("id").collect()]


def _blocks(sizes: list[int]):
    start, tables = 0, []
    for n in sizes:
        tables.append(pa.table({"id": pa.array(range(start, start + n), pa.int64()),
                                "s": pa.array([f"row-{i}" for i in range(start, start + n)])}))
        start += n
    return ray.data.from_arrow(tables)


def test_many_unequal_blocks_keep_their_order(spark, catalog):
    sizes = [5, 1, 17, 0, 3, 400, 2, 60, 9, 1]
    df = ftbridge.to_spark(_blocks(sizes), spark, catalog=catalog)
    assert df.rdd.getNumPartitions() == len(sizes)
    assert _ids(df) == list(range(sum(sizes)))
    per_partition = df.selectExpr("spark_partition_id() AS p", "id").groupBy("p").count().orderBy("p").collect()
    assert [r["count"] for r in per_partition] == [n for n in sizes if n]


@pytest.mark.core
def test_raydp_cases_keep_order(spark, catalog):
    ds = ray.data.from_items([{"id": i} for i in range(5)], override_num_blocks=5)
    assert _ids(ftbridge.to_spark(ds, spark, catalog=catalog)) == [0, 1, 2, 3, 4]
    df = spark.createDataFrame([(1, "a"), (2, "b"), (3, "c")], "id BIGINT, v STRING")
    back = ftbridge.to_spark(ftbridge.from_spark_recoverable(df, catalog=catalog), spark, catalog=catalog)
    assert [tuple(r) for r in back.collect()] == [(1, "a"), (2, "b"), (3, "c")]


@pytest.mark.core
def test_lazy_dataset_keeps_block_order(spark, catalog):
    def jitter(batch):
        import time

        time.sleep(0.05 * (batch["id"][0].as_py() % 3 == 0))  # some blocks finish later than the next ones
        return batch

    ds = ray.data.range(2000, override_num_blocks=20).map_batches(jitter, num_cpus=0, batch_format="pyarrow")
    assert _ids(ftbridge.to_spark(ds, spark, catalog=catalog)) == list(range(2000))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=random_frames())
@pytest.mark.core
def test_spark_ray_spark_round_trips_exactly(spark, tmp_path, frame):
    ddl, data = frame
    df = spark.createDataFrame(data, ddl)  # local data: a deterministic order (no shuffle)
    cat = str(tmp_path / "c.duckdb")
    ds = ftbridge.from_spark_recoverable(df, catalog=cat)
    back = ftbridge.to_spark(ds, spark, catalog=cat)
    assert back.schema == df.schema, f"{back.schema}\n!=\n{df.schema}"
    expected, got = spark_to_arrow(df), spark_to_arrow(back)
    assert got.equals(expected), f"{ddl}\n{got.to_pylist()[:3]}\n{expected.to_pylist()[:3]}"  # order included
    assert got.equals(read_all(ds))
    ftbridge.release(back)
    ftbridge.release(ds)


@pytest.mark.core
def test_every_type_round_trips_in_order(spark, catalog):
    from tests.integration.test_types import ALL_TYPES, rows

    df = spark.createDataFrame(rows(), ALL_TYPES).repartition(4)
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog)
    back = ftbridge.to_spark(ds, spark, catalog=catalog)
    assert back.schema == df.schema
    assert spark_to_arrow(back).equals(read_all(ds))  # the converted snapshot, in its order
    assert check(spark_to_arrow(df), spark_to_arrow(back)).ok


@pytest.mark.core
def test_recorded_verified_and_released(spark, catalog):
    df = ftbridge.to_spark(_blocks([10, 20, 30]), spark, catalog=catalog, name="back")
    cid = ftbridge.conversion_id(df)
    conv, parts = Catalog(catalog).load(cid)
    assert conv["direction"] == "ray_to_spark" and conv["name"] == "back" and conv["total_rows"] == 60
    assert [p["num_rows"] for p in parts] == [10, 20, 30] and all(p["checksum"].startswith("xxh64:") for p in parts)
    assert verify(Catalog(catalog), cid).exit_code == 0
    with pytest.raises(ConfigurationError, match="Ray -> Spark"):
        ftbridge.open_recoverable(cid, catalog=catalog)
    assert ftbridge.release(df) > 0
    assert not any(os.path.exists(p["path"]) for p in parts)
    assert Catalog(catalog).load(cid)[0]["status"] == "released"


@pytest.mark.core
def test_lost_and_corrupt_staged_files_are_staged_again(spark, catalog):
    sizes = [300, 200, 500, 100]
    df = ftbridge.to_spark(_blocks(sizes), spark, catalog=catalog)
    cid = ftbridge.conversion_id(df)
    _, parts = Catalog(catalog).load(cid)
    expected = spark_to_arrow(df)
    os.remove(parts[1]["path"])
    with open(parts[2]["path"], "r+b") as f:  # flip bytes in the middle: the checksum catches it
        f.seek(parts[2]["num_bytes"] // 2)
        f.write(b"\x00\xff\x00\xff")
    result = check(expected, spark_to_arrow(df))
    assert result.ok, str(result)
    assert _ids(df) == list(range(sum(sizes)))
    with Catalog(catalog).read() as con:
        kinds = [(e["kind"], e["partition_id"]) for e in queries.events(con, cid)]
    assert ("rebuilt_from_ray", 1) in kinds and ("rebuilt_from_ray", 2) in kinds
    assert ("spill_missing", 1) in kinds and ("checksum_mismatch", 2) in kinds
    assert verify(Catalog(catalog), cid).exit_code == 0


@pytest.mark.core
def test_a_failing_transform_is_one_clear_error(spark, catalog):
    def broken(batch):
        raise ValueError("bad row in the user's transform")

    ds = ray.data.range(100, override_num_blocks=2).map_batches(broken, num_cpus=0)
    with pytest.raises(ConversionError, match="bad row in the user's transform") as info:
        ftbridge.to_spark(ds, spark, catalog=catalog)
    assert "Traceback" not in str(info.value)


@pytest.mark.core
def test_unsupported_arrow_type_is_refused_naming_the_column(spark, catalog):
    ds = ray.data.from_arrow(pa.table({"id": [1, 2], "u": pa.array([1, 2], pa.uint64())}))
    with pytest.raises(UnsupportedTypeError, match="'u'"):
        ftbridge.to_spark(ds, spark, catalog=catalog)


@pytest.mark.core
def test_empty_dataset_keeps_its_schema(spark, catalog):
    ds = ray.data.from_arrow(pa.table({"id": pa.array([], pa.int64()), "s": pa.array([], pa.string())}))
    df = ftbridge.to_spark(ds, spark, catalog=catalog)
    assert df.count() == 0 and df.schema.simpleString() == "struct<id:bigint,s:string>"


@pytest.mark.core
def test_blocks_from_pandas(spark, catalog):
    import pandas as pd

    ds = ray.data.from_pandas([pd.DataFrame({"id": [1, 2, 3], "x": [0.5, None, 2.5]})])
    assert [tuple(r) for r in ftbridge.to_spark(ds, spark, catalog=catalog).collect()] == \
        [(1, 0.5), (2, None), (3, 2.5)]
