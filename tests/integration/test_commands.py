"""The main job, run as a user runs it: in its own process, with its own embedded Ray cluster;
afterwards no JVM of its is left. (The chaos runner's own process: tests/chaos/test_no_litter.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ftbridge.chaos.proctable import spark_daemon_jvms, wait_gone
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog
from tests.conftest import python_env, run_child

DEMO_TIMEOUT_S = 480  # below the test's timeout: a stuck demo is killed with everything it started


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    env = python_env()
    env.pop("RAY_ADDRESS", None)  # each command starts its own cluster
    # The warm-up and read tasks a user gets; the suite's JVM profile (only the JIT compiler and
    # collector differ; 91 s against 110 s for this demo; its flags: test_cluster.py).
    env.pop("FTBRIDGE_WARM_UP", None)
    env.pop("FTBRIDGE_READ_TASKS_PER_NODE", None)
    return run_child(args, env=env, timeout=timeout)


def _no_new_jvms(before: dict) -> None:
    new = set(spark_daemon_jvms()) - set(before)
    assert not wait_gone(new, timeout_s=30), f"Spark JVMs outlived their command: {new}"


@pytest.mark.timeout(DEMO_TIMEOUT_S + 120)
def test_demo_passes_every_check(tmp_path):
    catalog = str(tmp_path / "demo.duckdb")
    before = spark_daemon_jvms()
    out = _run([os.path.join(os.path.dirname(sys.executable), "ftbridge"), "demo", "--rows", "40000", "--catalog", catalog],
               DEMO_TIMEOUT_S)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "demo passed: 4/4 checks" in out.stdout
    with Catalog(catalog).read() as con:
        (conv,) = queries.conversions(con)
        kinds = {e["kind"] for e in queries.events(con, conv["conversion_id"])}
    assert conv["status"] == "released"
    assert {"spill_missing", "rebuilt_from_spark", "object_reconstructed", "released"} <= kinds
    _no_new_jvms(before)
