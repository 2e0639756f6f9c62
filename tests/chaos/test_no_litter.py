"""Nothing outlives the run: the temp dirs and the spill root before and after a chaos run.

The chaos runner runs in its own process (its own Ray cluster, Spark, JVMs) with a fresh
TMPDIR, so what it leaves is told apart from this test process's own files. Java ignores
TMPDIR and writes to /tmp, so /tmp is compared as well. Kept on purpose, and excluded:
ftbridge's per-process log folders and Ray's session folders (Ray's own policy).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import pytest

from ftbridge.chaos.proctable import spark_daemon_jvms
from ftbridge.cluster.jvm import cmdline
from tests.conftest import python_env, run_child

pytestmark = pytest.mark.chaos
RUN_TIMEOUT_S = 480  # below the test's own timeout, so a stuck run is killed with its cluster

# A node lost with its disk (its executor JVM, Ray workers and spill files with it): each other
# fault runs in-process in test_chaos.py, the driver kill has its own
# process-table and folder test (tests/integration/test_driver_killed.py).
SCENARIOS = "node_blocks_and_spill_lost"
OWN = ("ray", "bash_jobs", "pytest-of-")  # Ray's sessions; the test harness's own folders


def _tree(root: str, skip=()) -> set[str]:
    out = set()
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        dirs[:] = [x for x in dirs if not any(os.path.join(rel, x).lstrip("./").startswith(s) for s in skip)]
        out.update(os.path.normpath(os.path.join(rel, f)) for f in files)
        out.update(os.path.normpath(os.path.join(rel, x)) + "/" for x in dirs)
    return out


def _tmp_entries() -> set[str]:
    return {e for e in os.listdir("/tmp") if not e.startswith(OWN)}


def _ftbridge_processes() -> list[str]:
    """Reapers and JVMs whose command line names the fresh temp dir (nobody else's)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            args = " ".join(cmdline(int(entry)))
            if "ftbridge.cluster.reaper" in args or "no-litter-tmp" in args:
                found.append(f"{entry}: {args[:200]}")
    return found


@pytest.fixture
def fresh_tmpdir():
    """A short path (Ray puts its sockets under TMPDIR: 107 bytes at most)."""
    path = tempfile.mkdtemp(prefix="no-litter-tmp-", dir="/tmp")
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(RUN_TIMEOUT_S + 120)
def test_chaos_run_leaves_no_temp_files_no_spill_files_no_processes(tmp_path, fresh_tmpdir):
    fresh = fresh_tmpdir
    uid_root = f"ftbridge-{os.getuid()}"
    kept = (f"{uid_root}/logs", "ray")
    tmp_before = _tmp_entries() | {fresh.name}
    jvms_before = set(spark_daemon_jvms())
    reapers_before = set(_ftbridge_processes())
    env = {**python_env(), "TMPDIR": str(fresh)}
    for name in ("FTBRIDGE_SPILL_DIR", "FTBRIDGE_CATALOG"):
        env.pop(name, None)  # defaults: the spill root under the fresh TMPDIR
    env["FTBRIDGE_CATALOG"] = str(tmp_path / "catalog.duckdb")
    proc = run_child([sys.executable, "-m", "ftbridge.chaos", "run", "--scenarios", SCENARIOS, "--seeds", "1",
                      "--report", str(tmp_path / "report.json")], env=env, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "report.json").read_text())["scenarios"]  # the runner's own report
    assert [r["scenario"] for r in results] == SCENARIOS.split(",")
    for r in results:
        assert r["outcome"] == "recovered" and r["faults"], r
        assert r["rows_lost"] == r["rows_duplicated"] == r["rows_unexpected"] == r["rows_changed"] == 0, r
    assert (fresh / uid_root / "spill").is_dir(), "the run did not use the fresh temp dir's spill root"

    deadline = time.monotonic() + 60  # reapers finish after their owners exit
    while True:
        left_fresh = _tree(str(fresh), skip=kept) - {f"{uid_root}/", f"{uid_root}/spill/"}
        left_tmp = _tmp_entries() - tmp_before
        jvms = set(spark_daemon_jvms()) - jvms_before
        procs = set(_ftbridge_processes()) - reapers_before
        if not (left_fresh or left_tmp or jvms or procs) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not left_fresh, f"left in TMPDIR: {sorted(left_fresh)[:30]}"
    assert not left_tmp, f"left in /tmp: {sorted(left_tmp)[:30]}"
    assert not jvms, f"Spark JVMs left: {jvms}"
    assert not procs, f"ftbridge processes left: {sorted(procs)}"
    logs = os.listdir(fresh / uid_root / "logs")
    assert logs, "the run kept no log folder"


def test_chaos_run_refuses_an_unknown_scenario_before_starting_anything():
    bad = run_child([sys.executable, "-m", "ftbridge.chaos", "run", "--scenarios", "no_such_scenario"], env=python_env(),
                    timeout=120)
    assert bad.returncode == 2 and "unknown scenarios" in bad.stderr, bad.stderr[-2000:]
