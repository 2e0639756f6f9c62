"""`ftbridge submit`: a PySpark script on Spark on Ray, its exit code, no orphans when it crashes or is stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import ray

from ftbridge.chaos.proctable import spark_daemon_jvms, wait_gone
from tests.conftest import cli_in_process, python_env

SCRIPT = textwrap.dedent("""
    import sys, time
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("ignored").getOrCreate()
    total = spark.range(0, 1000, numPartitions=4).selectExpr("sum(id)").collect()[0][0]
    crypto = spark.sparkContext.getConf().get("spark.network.crypto.enabled", "false")
    print("RESULT", total, spark.sparkContext.master, spark.sparkContext.defaultParallelism, crypto, sys.argv[1:],
          flush=True)
    mode = sys.argv[1]
    if mode == "crash":
        raise ValueError("the script failed")
    if mode == "sleep":
        time.sleep(600)
    sys.exit(int(mode))
""")


def _submit(tmp_path, *args, wait=True, options=()):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "ftbridge.cli.main", "submit", "--address", ray.get_runtime_context().gcs_address,
           "--num-executors", "1", "--executor-cores", "2", "--executor-cpus", "0.5", "--executor-memory", "512MB",
           "--conf", "spark.sql.shuffle.partitions=3", *options, str(script), *args]
    if not wait:
        return subprocess.Popen(cmd, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=python_env(), capture_output=True, text=True, timeout=600)


def _own_jvms(before: dict) -> set[int]:
    return set(spark_daemon_jvms()) - set(before)


def test_submit_runs_the_script_on_spark_on_ray_and_returns_its_exit_code(ray_cluster, tmp_path):
    before = spark_daemon_jvms()
    proc = _submit(tmp_path, "7", "--flag", options=["--encrypt"])
    assert proc.returncode == 7, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    _, total, master, parallelism, crypto, argv = line.split(" ", 5)
    assert total == str(sum(range(1000))) and master.startswith("spark://") and parallelism == "2"
    assert crypto == "true"  # --encrypt reached the session
    assert argv == "['7', '--flag']"
    assert not wait_gone(_own_jvms(before), timeout_s=30)


def test_a_crashing_script_exits_1_with_its_traceback_and_leaves_nothing(ray_cluster, tmp_path):
    before = spark_daemon_jvms()
    proc = _submit(tmp_path, "crash")
    assert proc.returncode == 1
    assert "ValueError: the script failed" in proc.stderr and "RESULT 499500 spark://" in proc.stdout
    assert " false [" in proc.stdout  # not encrypted unless asked
    assert not wait_gone(_own_jvms(before), timeout_s=30)


def test_interrupted_and_terminated_submits_stop_spark(ray_cluster, tmp_path):
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)):
        before = spark_daemon_jvms()
        proc = _submit(tmp_path, "sleep", wait=False)
        deadline = time.monotonic() + 240
        line = ""
        while time.monotonic() < deadline and not line.startswith("RESULT"):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise AssertionError(proc.stderr.read()[-3000:])
        started = _own_jvms(before)
        assert started, "no Spark JVMs were started"
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=120) == code, proc.stderr.read()[-3000:]
        assert not wait_gone(started, timeout_s=30)


def test_bad_arguments_exit_3(tmp_path):
    """Refused before anything starts, so the console script's `main()` runs in-process."""
    for args in (["submit", str(tmp_path / "missing.py")], ["submit", "--conf", "novalue", "x.py"],
                 ["submit", "--num-executors", "0", "x.py"]):
        proc = cli_in_process(args)
        assert proc.returncode == 3, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
