"""Shared fixtures: one real multi-node Ray cluster per test session, Spark on top of it."""

from __future__ import annotations

import gc
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import hypothesis  # noqa: F401  (loaded now: its plugin imports it at the terminal summary, and a

#                 compile that late has failed in CPython 3.11 with "AST constructor recursion
#                 depth mismatch", ending the run without its summary line)
import pytest
import ray
from ray.cluster_utils import Cluster

import ftbridge
from ftbridge.adapters.ray import head_node_args
from ftbridge.chaos.fixtures import SHARED_CHAOS
from ftbridge.chaos.proctable import descendants, ray_processes, spark_daemon_jvms, wait_gone
from ftbridge.cluster import scratch
from ftbridge.cluster import session as session_module
from ftbridge.cluster.jvm import cmdline
from ftbridge.convert.conversion import REGISTRY
from ftbridge.lineage.catalog import default_catalog_path

logging.getLogger("ftbridge").setLevel(logging.INFO)
# Every Spark session of the suite is short and small: the driver's and executors' JVMs run with
# the C1 compiler only and a serial collector (FTBRIDGE_JVM_PROFILE=small), which cut a module's
# time by ~15 % on CI's two cores. Child drivers inherit it; the demo test runs the default.
os.environ.setdefault("FTBRIDGE_JVM_PROFILE", "small")
# The background warm-up (on by default) costs a session ~17 CPU-s and gives ~14 back to its first
# conversion: most test sessions are short or never convert, so the suite turns it off; the
# warm-up's own tests, the chaos scenarios' session and the demo run it as users do.
os.environ.setdefault("FTBRIDGE_WARM_UP", "false")
# One read task per node (default 2): each read task of a pass starts in a fresh Ray worker process
# when the reader is a Ray Train or Ray Data actor (their tasks cannot reuse the driver's idle
# workers), ~2.5 CPU-s of imports each. On CI's two cores the eight of a pass took ~40 s before the
# first batch of a training epoch; four take ~15 s. The default's several tasks per node run in
# the demo and the chaos runner's own process.
os.environ.setdefault("FTBRIDGE_READ_TASKS_PER_NODE", "1")
# Ray Data's usage poller (Ray 2.60) is a daemon thread, started by the first Dataset execution
# and alive until the process exits, that asks Prometheus on localhost:9090 for cluster counters
# every 10 s and logs each refusal with its traceback. In CPython 3.11 formatting a traceback
# parses source, and a parse in one thread can break one in another (tests/syntax.py): the suite's
# driver turns the poller off. Ray's own switch; usage stats stay as they are otherwise.
os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")

HEAD_CPUS = 2
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def private_dirs(tmp_path_factory):
    """Spill files and the default catalog of the whole session live in one temp folder."""
    root = tmp_path_factory.mktemp("ftbridge")
    os.environ["FTBRIDGE_SPILL_DIR"] = str(root / "spill")
    os.environ.setdefault("FTBRIDGE_CATALOG", str(root / "default-catalog.duckdb"))
    before = jvm_leftovers()
    yield root
    shutil.rmtree(root, ignore_errors=True)
    new = sorted(jvm_leftovers() - before)
    assert not new, f"the test session left JVM files in the checkout (a JVM crashed or ran in it): {new}"


# What a JVM leaves in its working folder: crash logs and replay files, core and heap dumps,
# Spark SQL's warehouse and Derby metastore. None may appear in the checkout.
JVM_LEFTOVERS = ("hs_err_pid*.log", "replay_pid*.log", "core", "core.[0-9]*", "*.hprof", "javacore*",
                 "derby.log", "metastore_db", "spark-warehouse")


def jvm_leftovers(root: pathlib.Path = REPO_ROOT) -> set[str]:
    return {str(path.relative_to(root)) for pattern in JVM_LEFTOVERS for folder in (root, root / "benchmarks")
            for path in folder.glob(pattern)}


@pytest.fixture(scope="session")
def ray_cluster(private_dirs):
    """A local Ray cluster (head node only at first); tests add and remove worker nodes."""
    os.environ.setdefault("FTBRIDGE_RAY_LOG_TO_DRIVER", "0")
    cluster = Cluster(initialize_head=True, head_node_args=head_node_args(num_cpus=HEAD_CPUS, include_dashboard=False))
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    SHARED_CHAOS.close()
    ftbridge.stop_spark()
    ray_procs = ray_processes(descendants(os.getpid()))  # raylets, GCS, every worker of the cluster
    ray.shutdown()
    cluster.shutdown()
    leftover = wait_gone(spark_daemon_jvms(), timeout_s=30)
    assert not leftover, f"Spark JVMs outlived the test session: {leftover}"
    leftover = wait_gone(ray_procs, timeout_s=60)
    assert not leftover, f"Ray processes outlived the test cluster: {[(p, cmdline(p)) for p in leftover]}"
    work_root = os.path.join(tempfile.gettempdir(), f"ftbridge-{os.getuid()}", "spark")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _work_dirs(work_root):
        scratch.sweep()  # what stop_spark does on the driver's node
        time.sleep(0.5)
    assert not _work_dirs(work_root), f"Spark work dirs outlived their JVMs: {_work_dirs(work_root)}"


def _work_dirs(root: str) -> list[str]:
    return [os.path.join(kind, d) for kind in ("master", "worker") if os.path.isdir(os.path.join(root, kind))
            for d in os.listdir(os.path.join(root, kind))]


class SharedSpark:
    """One Spark-on-Ray session (2 executors x 1 core) for every test that needs only *a* session:
    the `spark` fixture. Started by the first such test, it runs on until a test that starts its
    own session (or a module of such tests) comes, which stops it; the next `spark` test starts it
    again. The collection hook below puts the modules of `spark` tests next to each other, so the
    session starts about once for all of them."""

    def __init__(self) -> None:
        self.session = None

    def get(self):
        if self.session is None or session_module.current_or_none() is None:
            # Encrypted: the modules that start their own sessions run the default (authenticated only).
            self.session = ftbridge.init_spark("tests", num_executors=2, executor_cores=1, executor_memory="1GB",
                                               encrypt=True)
            self.session.sparkContext.setLogLevel("ERROR")
        return self.session

    def stop(self) -> None:
        if self.session is not None:
            self.session = None
            ftbridge.stop_spark()


SHARED_SPARK = SharedSpark()
SHARING_MODULES = pytest.StashKey[set]()  # the test modules with `spark` tests, found at collection
CHAOS_MODULES = pytest.StashKey[set]()  # the test modules with `chaos_env` tests


def _uses_spark(item) -> bool:
    return "spark" in getattr(item, "fixturenames", ())


def _uses_chaos_env(item) -> bool:
    return "chaos_env" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session, config, items):
    """The modules with `chaos_env` tests run first, one after another (the chaos scenarios, then
    the node-loss and training tests); then the integration modules with `spark` tests, one after another; every
    module keeps its tests' order, every other module its place."""
    modules: dict = {}
    for item in items:
        modules.setdefault(item.path, []).append(item)
    sharing = {path for path, group in modules.items() if any(_uses_spark(i) for i in group)}
    chaos = {path for path, group in modules.items() if any(_uses_chaos_env(i) for i in group)}
    config.stash[SHARING_MODULES] = sharing
    config.stash[CHAOS_MODULES] = chaos

    def key(item) -> tuple[int, int, int]:
        directory = next((rank for rank, part in enumerate(("chaos", "integration", "java21", "unit"))
                          if part in item.path.parts), 4)
        if item.path in chaos:
            return 0, directory, 0
        return 1, directory, 0 if directory == 1 and item.path in sharing else 1

    items.sort(key=key)  # stable: the collected order within equal keys


@pytest.fixture(scope="module", autouse=True)
def _modules_that_start_their_own_spark(request):
    """A module none of whose tests uses `spark` starts its own sessions: the shared one stops first
    (before the module's own fixtures, e.g. a training cluster's session, start). A module without
    `chaos_env` tests ends the shared chaos environment the same way."""
    if request.path not in request.config.stash.get(CHAOS_MODULES, set()):
        SHARED_CHAOS.close()
    if request.path not in request.config.stash.get(SHARING_MODULES, set()):
        SHARED_SPARK.stop()
    yield


@pytest.fixture(autouse=True)
def _tests_that_start_their_own_spark(request):
    """A test without `spark` stops the shared session; a `spark` test's conversions end with it."""
    if not _uses_spark(request.node):
        SHARED_SPARK.stop()
        yield
        return
    before = set(REGISTRY.rebuilders) | set(REGISTRY.stagings)
    yield
    end_test_conversions(before)


def end_test_conversions(before: set[str]) -> None:
    """What the session's stop would do for the conversions a test made: stop serving their
    rebuilds and end the catalog writers (one actor each) of the catalogs nothing uses any more.
    The session's default catalog keeps its writer."""
    for conversion_id in set(REGISTRY.rebuilders) - before:
        REGISTRY.forget(conversion_id)
    for conversion_id in set(REGISTRY.stagings) - before:
        REGISTRY.forget_staging(conversion_id)
    gc.collect()
    REGISTRY.end_unused_writers(keep={default_catalog_path()})


@pytest.fixture
def spark(ray_cluster):
    """The shared Spark-on-Ray session (see SharedSpark)."""
    return SHARED_SPARK.get()


def python_env() -> dict:
    """Environment for child interpreters: same venv, same Ray auth."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(__file__)), env.get("PYTHONPATH", "")])
    env["PYSPARK_PYTHON"] = sys.executable
    return env


def free_cpus_settle_at(value: float, timeout_s: float = 60.0) -> bool:
    """Ray's view of free CPUs lags behind actors that start and end: wait until it reads `value`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if abs(ray.available_resources().get("CPU", 0) - value) < 1e-6:
            return True
        time.sleep(0.5)
    return False


def wait_for_running_stage(spark, timeout_s: float = 120.0) -> tuple[int, int]:
    """Until a stage of `spark` has finished some of its tasks and not all: (done, total).

    A fault injected right after this lands while the job runs (tests then check the job had
    not finished), instead of after a guessed sleep."""
    tracker = spark.sparkContext.statusTracker()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for stage_id in tracker.getActiveStageIds():
            info = tracker.getStageInfo(stage_id)
            if info is not None and 0 < info.numCompletedTasks < info.numTasks:
                return info.numCompletedTasks, info.numTasks
        time.sleep(0.05)
    raise AssertionError(f"no Spark stage was running with tasks done within {timeout_s:.0f}s")


def run_child(args: list[str], *, timeout: float, env: dict | None = None, **_ignored) -> subprocess.CompletedProcess:
    """`subprocess.run(args, capture_output=True, text=True)` that, when `timeout` runs out, kills the
    child and everything below it (its own Ray, JVMs, reapers) before failing the test. Keep
    `timeout` below the test's pytest timeout, or pytest ends the test first and orphans them."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = set(descendants(proc.pid)) | {proc.pid}
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out, err = proc.communicate(timeout=60)
        left = wait_gone(tree, timeout_s=30)
        raise AssertionError(f"{args[:4]} did not finish within {timeout:.0f}s; killed it and its "
                             f"{len(tree) - 1} processes ({len(left)} still alive)\n{out[-2000:]}\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def cli_in_process(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """The `ftbridge` console script's own `main()` run in this process (same parsing, exit codes
    and output), with `env` added to the environment: spares a Python start-up per read command."""
    import contextlib
    import io
    from unittest import mock

    from ftbridge.cli.main import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env or {}), mock.patch.object(sys, "argv", ["ftbridge", *args]), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli_main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
