"""Start/stop, resource errors, no orphan JVMs (node loss: test_node_loss.py)."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
import ray

import ftbridge
from ftbridge.chaos.proctable import spark_daemon_jvms, wait_gone
from ftbridge.errors import InsufficientResourcesError
from tests.conftest import free_cpus_settle_at, python_env, run_child


def test_more_cpus_than_the_cluster_has_fails_fast(ray_cluster):
    secret = "given-secret-" + "7" * 24  # and the error of a failed start does not show the secret
    with pytest.raises(InsufficientResourcesError, match="CPUs") as failed:
        ftbridge.init_spark("big", num_executors=64, executor_cores=1, executor_memory="512MB",
                            configs={"spark.authenticate.secret": secret})
    assert secret not in str(failed.value) and secret not in repr(failed.value)
    with pytest.raises(InsufficientResourcesError, match="memory"):
        ftbridge.init_spark("big", num_executors=1, executor_cores=1, executor_memory="100000GB")
    assert not spark_daemon_jvms()


def test_resources_held_elsewhere_fail_within_the_bound(ray_cluster):
    @ray.remote(num_cpus=ray.cluster_resources()["CPU"])
    class Hog:
        def ping(self):
            return 1

    hog = Hog.remote()
    ray.get(hog.ping.remote(), timeout=60)
    try:
        with pytest.raises(InsufficientResourcesError, match="not placed within 5s"):
            ftbridge.init_spark("starved", num_executors=1, executor_cores=1, executor_memory="512MB",
                                start_timeout_s=5)
    finally:
        ray.kill(hog)
    assert not wait_gone(spark_daemon_jvms(), timeout_s=30)


def test_stop_and_restart_in_one_process_warm_up_off_and_on(ray_cluster, monkeypatch):
    """Two sessions in one process, each stopped with nothing left behind: warm-up off (it starts
    nothing), then warm-up on, its executors up and holding every CPU, stopped at once while the
    warm-up runs (its thread has ended when stop_spark returns and no task of it waits for a CPU).
    The next test's session, the third in the process, converts."""
    from ftbridge.cluster import session

    def stop_and_check_gone(executors: int):
        pids = [p for i in ftbridge.executors() for p in (i.jvm_pid, i.worker_jvm_pid, i.actor_pid)]
        assert len(pids) == 3 * executors, ftbridge.executors()
        ftbridge.stop_spark()
        assert not wait_gone(pids, timeout_s=30), "stop_spark left processes behind"
        assert not wait_gone(spark_daemon_jvms(), timeout_s=30)

    monkeypatch.setenv("FTBRIDGE_WARM_UP", "false")
    spark = ftbridge.init_spark("cold", num_executors=1, executor_cores=1, executor_memory="512MB")
    assert not hasattr(session.current(), "warm_up_done")
    assert spark.range(0, 1000).count() == 1000
    stop_and_check_gone(1)

    monkeypatch.setenv("FTBRIDGE_WARM_UP", "true")
    ftbridge.init_spark("warm-stop", num_executors=2, executor_cores=1, executor_memory="512MB")
    owner = session.current()
    running = not owner.warm_up_done.is_set()
    stop_and_check_gone(2)
    assert running, "the warm-up had finished before stop_spark: the test proves nothing"
    assert owner.warm_up_done.is_set(), "stop_spark returned while the warm-up thread still ran"
    assert free_cpus_settle_at(ray.cluster_resources()["CPU"]), \
        f"CPUs still taken after stop_spark: {ray.available_resources()}"


def test_warm_up_starts_the_read_path_in_the_background_and_stop_ends_it(ray_cluster, tmp_path, monkeypatch):
    from ftbridge.cluster import session
    from ftbridge.common.config import RAY_NAMESPACE
    from ftbridge.convert.conversion import REGISTRY

    monkeypatch.setenv("FTBRIDGE_WARM_UP", "true")  # the default (the suite turns it off: conftest)
    # Two 1-core executors on the 2-CPU head: they hold every Ray CPU, and the warm-up, which
    # asks for none, must still finish (a Ray Data job asking for one CPU would wait forever).
    spark = ftbridge.init_spark("warm", num_executors=2, executor_cores=1, executor_memory="512MB")
    owner = session.current()
    try:
        assert free_cpus_settle_at(0), f"the executors do not hold every CPU: {ray.available_resources()}"
        assert owner.warm_up_done.wait(90), "the warm-up did not finish within 90 s"
        report = owner.warm_up_report
        assert "ray_error" not in report, report
        assert report["read_workers"] >= 1, report
        service = REGISTRY.service_name()
        # The rebuild service is up and answers (a no-op completion; get_actor raises if it is not there).
        assert ray.get(ray.get_actor(service, namespace=RAY_NAMESPACE).complete.remote("none", -1, None),
                       timeout=60) is None
        df = spark.range(0, 10_000, numPartitions=2).selectExpr("id", "cast(id as string) as s")
        ds = ftbridge.from_spark_recoverable(df, catalog=str(tmp_path / "c.duckdb"))
        assert sorted(r["id"] for r in ds.take_all()) == list(range(10_000))
        ftbridge.release(ds)
    finally:
        ftbridge.stop_spark()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get_actor(service, namespace=RAY_NAMESPACE)
        except ValueError:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the rebuild service the warm-up started outlived stop_spark")


RAY_SHUTDOWN_FIRST = r"""
import json, os, sys, ray, ftbridge
from ftbridge.chaos.proctable import descendants, spark_daemon_jvms
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
spark = ftbridge.init_spark("ray-shutdown-first", num_executors=1, executor_cores=1, executor_memory="512MB")
ds = ftbridge.from_spark_recoverable(spark.range(0, 4000, numPartitions=2), catalog=sys.argv[1])
cid = ftbridge.conversion_id(ds)
with Catalog(sys.argv[1]).read() as con:
    paths = [p["path"] for p in queries.partitions(con, cid)]
jvms = sorted(set(spark_daemon_jvms()) & set(descendants(os.getpid())))
ray.shutdown()       # the program ends Ray with the session up ...
ftbridge.stop_spark()  # ... and stops Spark after it, as programs do
with Catalog(sys.argv[1]).read() as con:
    status = queries.conversion(con, cid)["status"]
print("RESULT " + json.dumps({"status": status, "paths": paths, "jvms": jvms}), flush=True)
"""


def test_ray_shutdown_with_the_session_up_stops_spark_first_and_the_program_goes_on(tmp_path):
    """A program that calls `ray.shutdown()` before `stop_spark()` (its own embedded Ray): Spark
    stops first, while Ray is up, as stop_spark() would (the conversion released, its files
    gone, the JVMs ended); the later stop_spark() has nothing to do; the program ends with 0."""
    proc = run_child([sys.executable, "-c", RAY_SHUTDOWN_FIRST, str(tmp_path / "c.duckdb")],
                     env=python_env(), timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = [json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert result["status"] == "released", result
    assert result["paths"] and not [p for p in result["paths"] if os.path.exists(p)], result
    assert len(result["jvms"]) >= 2, result  # the driver's and the executor's, found before the shutdown
    assert not wait_gone(result["jvms"], timeout_s=30), "JVMs outlived the program"
