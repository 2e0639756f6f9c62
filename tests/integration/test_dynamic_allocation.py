"""Dynamic allocation on Ray: executor actors come with Spark's demand and go when idle,
their CPUs back to Ray; a conversion outlives the scale-down and rebuilds by scaling up."""

from __future__ import annotations

import os
import threading
import time

import pytest
import ray
from pyspark import StorageLevel

import ftbridge
from ftbridge.adapters.spark import executor_target
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from ftbridge.errors import ConfigurationError
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog
from tests.conftest import free_cpus_settle_at

FAST = {"spark.dynamicAllocation.executorIdleTimeout": "3s", "spark.dynamicAllocation.schedulerBacklogTimeout": "1s"}


def _wait_executors(n: int, timeout_s: float = 90.0) -> list:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        infos = ftbridge.executors()
        if len(infos) == n:
            return infos
        time.sleep(0.5)
    raise AssertionError(f"expected {n} executor actors within {timeout_s}s, have {len(ftbridge.executors())}")


def test_bad_dynamic_settings_are_refused(ray_cluster):
    with pytest.raises(ConfigurationError, match="max_executors"):
        ftbridge.init_spark("dyn-bad", num_executors=0, executor_cores=1, executor_memory="512MB",
                            configs={"spark.dynamicAllocation.enabled": "true"})
    with pytest.raises(ConfigurationError, match="min_executors <= num_executors <= max_executors"):
        ftbridge.init_spark("dyn-bad", num_executors=3, executor_cores=1, executor_memory="512MB", max_executors=2)
    with pytest.raises(ConfigurationError, match="num_executors must be an integer >= 1"):
        ftbridge.init_spark("static-bad", num_executors=0, executor_cores=1, executor_memory="512MB")


@pytest.fixture(scope="module")
def dynamic_spark(ray_cluster):
    """One session with dynamic allocation (0 to 2 executors, short idle timeout) for the module's
    tests, started with every Ray CPU free and no executor."""
    total = ray.cluster_resources()["CPU"]
    assert free_cpus_settle_at(total), "CPUs of earlier tests were not given back"
    spark = ftbridge.init_spark("dyn", num_executors=0, executor_cores=1, executor_memory="512MB",
                                min_executors=0, max_executors=2, configs=FAST)
    try:
        yield spark
    finally:
        ftbridge.stop_spark()
    assert free_cpus_settle_at(total)


def test_burst_scales_up_to_max_then_idles_to_min_and_cpus_go_back_to_ray(dynamic_spark):
    spark = dynamic_spark
    total = ray.cluster_resources()["CPU"]
    assert ftbridge.executors() == [] and executor_target(spark.sparkContext) == 0
    result, peak = [], []

    def slow(i):
        time.sleep(3)
        return i

    job = threading.Thread(target=lambda: result.append(spark.sparkContext.parallelize(range(8), 8).map(slow).sum()))
    job.start()
    while job.is_alive():
        peak.append(len(ftbridge.executors()))
        time.sleep(0.5)
    job.join()
    assert result == [sum(range(8))]
    assert max(peak) == 2, peak  # the maximum, not more
    _wait_executors(0)            # back to the minimum once idle
    assert free_cpus_settle_at(total), ray.available_resources()

    @ray.remote(num_cpus=total)
    def needs_every_cpu():
        return "ran"

    assert ray.get(needs_every_cpu.remote(), timeout=60) == "ran"
    # And Spark still works: a new job brings an executor back. (A job without a shuffle: with
    # shuffle tracking on, an executor holding shuffle files stays, and the next test waits for
    # the scale-down to none.)
    assert spark.sparkContext.parallelize(range(1000), 2).sum() == sum(range(1000))


def test_conversion_survives_scale_down_and_rebuild_scales_up(dynamic_spark, tmp_path):
    catalog = str(tmp_path / "catalog.duckdb")
    spark = dynamic_spark
    df = spark.range(0, 120_000, numPartitions=4).selectExpr(
        "id", "id * 3 as v", "concat('row-', cast(id as string)) as s")
    expected = spark_to_arrow(df)
    # Nothing cached in Spark: the executors hold no blocks and may go once idle.
    ds = ftbridge.from_spark_recoverable(df, StorageLevel.NONE, catalog=catalog)
    cid = ftbridge.conversion_id(ds)
    _wait_executors(0)
    result = check(expected, read_all(ds))
    assert result.ok, str(result)
    with Catalog(catalog).read() as con:
        victim = queries.partitions(con, cid)[1]
    os.remove(victim["path"])
    # The rebuild is a Spark job: Spark asks for an executor, an actor starts, the file comes back.
    again = ftbridge.open_recoverable(cid, catalog=catalog)
    result = check(expected, read_all(again))
    assert result.ok, str(result)
    with Catalog(catalog).read() as con:
        kinds = [(e["kind"], e["partition_id"]) for e in queries.events(con, cid)]
        assert queries.partitions(con, cid)[1]["state"] == "healthy"
    assert ("rebuilt_from_spark", 1) in kinds
    ftbridge.release(again, catalog=catalog)
