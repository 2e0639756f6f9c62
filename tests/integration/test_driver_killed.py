"""A driver killed while `init_spark` runs leaves nothing behind: no JVM, no Ray process, no folder.

Each case starts a real driver (its own embedded Ray, Spark on it) in a child process, waits
until PySpark's driver JVM appears, lets the start-up run on for a moment, sends a real
signal, and then checks the process table - every process the driver had started, the JVMs
included - and its folder in the temp dir.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from ftbridge.chaos.proctable import descendants, wait_gone
from ftbridge.cluster import scratch
from tests.conftest import python_env

DRIVER = textwrap.dedent("""
    import ray, ftbridge
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ftbridge.init_spark("killed-driver", num_executors=1, executor_cores=1, executor_memory="512MB")
    print("READY", flush=True)
    import time; time.sleep(600)
""")
DRIVER_JVM = "org.apache.spark.deploy.SparkSubmit"
# The reaper gives the JVM 20 s for its shutdown hooks before it kills it.
GONE_WITHIN_S = 60
# Ray's own agents notice a raylet that died with its driver by polling (about a minute here):
# Ray's behaviour, not ftbridge's, so the test does not wait for them; its cleanup ends them.
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def _wait_driver_jvm(proc, timeout_s: float = 120.0) -> dict[int, str]:
    """The child's process tree once its driver JVM (PySpark's gateway) runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        tree = descendants(proc.pid)
        if any(DRIVER_JVM in args and "java" in args for args in tree.values()):
            return tree
        if proc.poll() is not None:
            raise AssertionError(f"the driver exited before its JVM started: {proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"no driver JVM within {timeout_s:.0f}s")


@pytest.mark.parametrize("sig,after_s", [
    pytest.param(signal.SIGTERM, 0.3, marks=pytest.mark.core, id="sigterm-while-the-jvm-starts"),
    pytest.param(signal.SIGKILL, 0.3, id="sigkill-while-the-jvm-starts"),
    pytest.param(signal.SIGTERM, 3.0, id="sigterm-while-the-context-starts"),
])
def test_driver_killed_during_init_spark_leaves_no_process_or_folder(sig, after_s):
    env = {k: v for k, v in python_env().items() if k != "RAY_ADDRESS"}  # its own Ray, not the session's
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    started: dict[int, str] = {}
    temp_before = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("tmp")}
    try:
        _wait_driver_jvm(proc)
        time.sleep(after_s)
        started = descendants(proc.pid)  # everything it started up to the signal
        assert proc.poll() is None, "the driver finished before it could be killed"
        proc.send_signal(sig)
        proc.wait(timeout=60)
        started.update(descendants(proc.pid))
        agents = {pid for pid, args in started.items() if args.startswith(RAY_AGENTS)}
        leftover = wait_gone(set(started) - agents, timeout_s=GONE_WITHIN_S)
        assert not leftover, f"outlived the killed driver: {[(p, started[p][:200]) for p in leftover]}"
        folder = os.path.join(scratch.root(), f"driver-{proc.pid}")
        deadline = time.monotonic() + 10
        while os.path.exists(folder) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not os.path.exists(folder), f"the killed driver's folder {folder} was not removed"
        assert any(DRIVER_JVM in args for args in started.values()), "the driver JVM was never seen"
        # PySpark's gateway connection-info folder (tempfile.mkdtemp) went in the driver's folder.
        new = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("tmp")} - temp_before
        assert not new, f"the killed driver left {sorted(new)} in {tempfile.gettempdir()}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for pid in wait_gone(started, timeout_s=0):  # Ray's agents; a failed case's processes too
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
