"""The main job and the chaos runner, run as a user runs them: in their own processes, each
with its own embedded multi-node Ray cluster; afterwards no JVM or temp dir of theirs is left."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile

from chaos.proctable import spark_daemon_jvms, wait_gone
from lineage import queries
from lineage.catalog import Catalog
from tests.conftest import python_env


def _chaos_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "ftbridge-chaos-*")))


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    env = python_env()
    env.pop("RAY_ADDRESS", None)  # each command starts its own cluster
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def _no_new_jvms(before: dict) -> None:
    new = set(spark_daemon_jvms()) - set(before)
    assert not wait_gone(new, timeout_s=30), f"Spark JVMs outlived their command: {new}"


def test_demo_passes_every_check(tmp_path):
    catalog = str(tmp_path / "demo.duckdb")
    before = spark_daemon_jvms()
    out = _run([os.path.join(os.path.dirname(sys.executable), "ftbridge"), "demo", "--catalog", catalog], 900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "demo passed: 4/4 checks" in out.stdout
    with Catalog(catalog).read() as con:
        (conv,) = queries.conversions(con)
        kinds = {e["kind"] for e in queries.events(con, conv["conversion_id"])}
    assert conv["status"] == "released"
    assert {"spill_missing", "rebuilt_from_spark", "object_reconstructed", "released"} <= kinds
    _no_new_jvms(before)


def test_chaos_runner_reports_and_cleans_up(tmp_path):
    report = tmp_path / "chaos.json"
    dirs_before, jvms_before = _chaos_dirs(), spark_daemon_jvms()
    out = _run([sys.executable, "-m", "chaos", "run", "--scenarios", "spill_corrupted", "--seeds", "1",
                "--report", str(report)], 900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (result,) = json.loads(report.read_text())["scenarios"]
    assert result["scenario"] == "spill_corrupted" and result["outcome"] == "recovered"
    assert result["rows_lost"] == result["rows_duplicated"] == 0 and result["faults"]
    assert _chaos_dirs() - dirs_before == set(), "the runner left its temp dir behind"
    _no_new_jvms(jvms_before)
    bad = _run([sys.executable, "-m", "chaos", "run", "--scenarios", "no_such_scenario"], 120)
    assert bad.returncode == 2 and "unknown scenarios" in bad.stderr
