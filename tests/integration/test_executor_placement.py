"""Executor actors sized apart from their Spark cores, in a caller's placement group; Ray client refused."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import ray
from ray.util.placement_group import placement_group, remove_placement_group

import ftbridge
from ftbridge.chaos.proctable import spark_daemon_jvms, wait_gone
from ftbridge.errors import ConfigurationError, InsufficientResourcesError
from tests.conftest import free_cpus_settle_at, python_env


def _concurrent_tasks(spark, slots: int) -> int:
    """How many tasks Spark really ran at once (each task sleeps, then reports its interval)."""

    def interval(_):
        start = time.time()
        time.sleep(4.0)
        yield (start, time.time())

    spans = spark.sparkContext.parallelize(range(slots), slots).mapPartitions(interval).collect()
    return max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)



def test_fractional_cpu_executor_runs_more_spark_cores_than_ray_cpus(ray_cluster):
    """RayDP's case: more Spark cores in one actor (here: one more than the whole cluster's CPUs)
    than Ray has CPUs, the actor asking Ray for 0.1 CPU."""
    cores = int(ray.cluster_resources()["CPU"]) + 1
    with pytest.raises(InsufficientResourcesError, match="CPUs"):  # what ftbridge refused before
        ftbridge.init_spark("whole", num_executors=1, executor_cores=cores, executor_memory="512MB")
    total = ray.cluster_resources()["CPU"]
    assert free_cpus_settle_at(total), "CPUs of earlier tests were not given back"
    spark = ftbridge.init_spark("fraction", num_executors=1, executor_cores=cores, executor_memory="512MB",
                                executor_cpus=0.1)
    try:
        assert spark.sparkContext.defaultParallelism == cores
        assert _concurrent_tasks(spark, cores) == cores
        assert free_cpus_settle_at(total - 0.1), ray.available_resources()
    finally:
        ftbridge.stop_spark()


@pytest.mark.core
def test_executors_in_a_given_placement_group_at_given_bundles(ray_cluster):
    pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}, {"CPU": 0.2}], strategy="PACK")
    ray.get(pg.ready(), timeout=60)
    try:
        with pytest.raises(InsufficientResourcesError, match="bundle 2"):  # 0.3 CPU do not fit in 0.2
            ftbridge.init_spark("pg-small", num_executors=2, executor_cores=2, executor_memory="512MB",
                                executor_cpus=0.3, placement_group=pg, placement_group_bundle_indexes=[0, 2])
        with pytest.raises(ConfigurationError, match="bundle index 5"):
            ftbridge.init_spark("pg-bad", num_executors=1, executor_cores=1, executor_memory="512MB",
                                executor_cpus=0.1, placement_group=pg, placement_group_bundle_indexes=[5])
        # These bundles reserve no Ray memory: the executors then ask for none inside them.
        spark = ftbridge.init_spark("pg", num_executors=2, executor_cores=2, executor_memory="512MB",
                                    executor_cpus=0.3, placement_group=pg, placement_group_bundle_indexes=[1, 0])
        try:
            infos = ftbridge.executors()
            assert len(infos) == 2 and {i.placement_group_id for i in infos} == {pg.id.hex()}
            assert spark.range(0, 10_000, numPartitions=4).count() == 10_000
            assert spark.sparkContext.defaultParallelism == 4
        finally:
            ftbridge.stop_spark()
        assert ray.util.placement_group_table(pg)["state"] == "CREATED"  # the caller's group stays
    finally:
        remove_placement_group(pg)
    assert not wait_gone(spark_daemon_jvms(), timeout_s=30)


def test_ray_client_address_is_refused_at_once_with_what_to_do(ray_cluster):
    code = """
import os, ray, ftbridge
from ftbridge.errors import ConfigurationError
os.environ["RAY_ADDRESS"] = "ray://127.0.0.1:10001"
try:
    ftbridge.init_spark("client", num_executors=1, executor_cores=1, executor_memory="512MB")
except ConfigurationError as exc:
    print("REFUSED", ray.is_initialized(), exc)
"""
    proc = subprocess.run([sys.executable, "-c", code], env=python_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "REFUSED" in proc.stdout and "Ray client" in proc.stdout and "ray job submit" in proc.stdout
    assert proc.stdout.split()[1] == "False", "init_spark tried to reach the Ray client before refusing"
