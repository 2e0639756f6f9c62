"""Blocks and spill files lost with a Ray node are rebuilt (real node removal)."""

from __future__ import annotations

import shutil

import pytest

import ftbridge
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from tests.conftest import stop_spark_and_remove
from ftbridge.convert.spill.target import SpillTarget
from lineage import queries
from lineage.catalog import Catalog
from lineage.writer import flush


@pytest.fixture
def worker_nodes(ray_cluster):
    nodes = [ray_cluster.add_node(num_cpus=1, resources={"spark_node": 1}, object_store_memory=200 << 20)
             for _ in range(3)]
    ray_cluster.wait_for_nodes()
    yield nodes
    stop_spark_and_remove(ray_cluster, nodes)


@pytest.mark.parametrize("lose_disk", [False, True], ids=["blocks-lost", "blocks-and-spill-lost"])
def test_node_removed_after_conversion(ray_cluster, worker_nodes, tmp_path, lose_disk):
    catalog = str(tmp_path / "c.duckdb")
    spark = ftbridge.init_spark("node-loss", num_executors=2, executor_cores=1, executor_memory="512MB",
                                executor_resources={"spark_node": 1})
    df = spark.range(0, 40_000, numPartitions=6).selectExpr("id", "id * 3 as a", "sha1(cast(id as string)) as h")
    expected = spark_to_arrow(df)
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog)
    cid = ftbridge.conversion_id(ds)
    with Catalog(catalog).read() as con:
        parts = queries.partitions(con, cid)
    by_id = {n.node_id: n for n in worker_nodes}
    victim_node = next(p["node_id"] for p in parts if p["node_id"] in by_id)
    with Catalog(catalog).read() as con:
        block_node = {e["partition_id"]: e["node_id"] for e in queries.events(con, cid) if e["kind"] == "read"}
    # Blocks live where their read task ran; spill files live where Spark wrote them.
    lost_blocks = sorted(pid for pid, node in block_node.items() if node == victim_node)
    lost_files = sorted(p["partition_id"] for p in parts if p["node_id"] == victim_node)
    assert lost_blocks and lost_files

    ray_cluster.remove_node(by_id[victim_node])
    if lose_disk:
        shutil.rmtree(f"{SpillTarget.resolve(None).root}/{victim_node}")

    result = check(expected, read_all(ds))
    assert result.ok, str(result)
    flush(Catalog(catalog))  # read events are buffered for up to 0.5 s

    with Catalog(catalog).read() as con:
        events = queries.events(con, cid)
        after = {p["partition_id"]: p for p in queries.partitions(con, cid)}
    kinds = {(e["kind"], e["partition_id"]) for e in events}
    for pid in lost_blocks:
        assert ("object_reconstructed", pid) in kinds, kinds
        if lose_disk and pid in lost_files:
            assert ("spill_missing", pid) in kinds and ("rebuilt_from_spark", pid) in kinds
            assert after[pid]["node_id"] != victim_node and after[pid]["rebuilt_count"] == 1
