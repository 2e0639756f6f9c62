"""Spark's JVMs start from a class-sharing archive: recorded by one session, built at its stop,
mapped by every JVM of the next; a broken archive or a failed build only turns sharing off."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ftbridge
from ftbridge.adapters.spark import spark_home
from ftbridge.cluster import cds, session
from ftbridge.cluster.jvm import find_java
from tests.conftest import python_env


def _maps_archive(pid: int, archive: Path) -> bool:
    with open(f"/proc/{pid}/maps") as f:
        return str(archive) in f.read()


def _session_jvms() -> dict[str, int]:
    """Role -> pid of each Spark JVM of the current session (all on this machine)."""
    pids = {"master": session.current().master_info["jvm_pid"]}
    for i, info in enumerate(ftbridge.executors()):
        pids[f"worker{i}"] = info.worker_jvm_pid
        pids[f"executor{i}"] = info.jvm_pid
    return pids


def _checked_job(spark) -> None:
    rows = spark.range(0, 200_000, numPartitions=4).selectExpr("id", "id * 7 % 1000 as v")
    assert rows.groupBy().sum("v").collect()[0][0] == sum(i * 7 % 1000 for i in range(200_000))


def test_record_build_use_and_broken_archive(ray_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("FTBRIDGE_CACHE_DIR", str(tmp_path / "cache"))
    share = None
    spark = ftbridge.init_spark("cds-record", num_executors=1, executor_cores=1, executor_memory="512MB")
    try:
        share = session.current().cds
        assert share.mode == "record"
        _checked_job(spark)
        assert {p.name.split("-")[0].removesuffix(".lst") for p in share.lists.glob("*.lst")} >= \
            {"master", "worker", "executor"}
    finally:
        ftbridge.stop_spark()
    assert share.archive.is_file() and share.archive.stat().st_size > 10 << 20  # built at stop
    assert not share.lists.exists() and not share.failed.exists()

    # The next session, in a new driver process on the same Ray: every JVM of it (driver, master,
    # worker, executor) maps the archive.
    probe = (
        "import json, ray, ftbridge\n"
        "from ftbridge.cluster import session\n"
        "from tests.integration.test_class_sharing import _checked_job, _session_jvms\n"
        f"ray.init(address={ray_cluster.address!r}, log_to_driver=False)\n"
        "spark = ftbridge.init_spark('cds-use', num_executors=1, executor_cores=1, executor_memory='512MB')\n"
        "_checked_job(spark)\n"
        "jvms = {**_session_jvms(), 'driver': spark.sparkContext._gateway.proc.pid}\n"
        f"mapped = {{role: {str(share.archive)!r} in open(f'/proc/{{pid}}/maps').read() for role, pid in jvms.items()}}\n"
        "print('MAPPED', json.dumps({'mode': session.current().cds.mode, 'mapped': mapped}))\n"
        "ftbridge.stop_spark(); ray.shutdown()\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=python_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next((x for x in out.stdout.splitlines() if x.startswith("MAPPED ")), None)
    assert line is not None, out.stdout[-2000:]
    used = json.loads(line[len("MAPPED "):])
    assert used == {"mode": "use", "mapped": {r: True for r in ("master", "worker0", "executor0", "driver")}}, used

    # A broken archive (here: overwritten) does not stop any JVM; they start without it.
    share.archive.chmod(0o600)
    share.archive.write_bytes(b"not an archive" * 1000)
    spark = ftbridge.init_spark("cds-broken", num_executors=1, executor_cores=1, executor_memory="512MB")
    try:
        _checked_job(spark)
        assert not any(_maps_archive(pid, share.archive) for pid in _session_jvms().values())
    finally:
        ftbridge.stop_spark()


def test_failed_build_is_remembered_and_sharing_stays_off(tmp_path, monkeypatch):
    monkeypatch.setenv("FTBRIDGE_CACHE_DIR", str(tmp_path / "cache"))
    share = cds.ClassShare(find_java(), spark_home())
    assert share.mode == "record"
    for role in cds.ROLES:
        (share.lists / f"{role}.lst").write_text("java/lang/Object id: 0\n")
    (share.lists / "classpath.txt").write_text(str(tmp_path / "missing.jar"))
    share.java = shutil.which("false")  # a runtime whose dump fails (exit code 1)
    share.finish()
    assert share.failed.is_file() and not share.archive.exists()
    again = cds.ClassShare(find_java(), spark_home())
    assert again.mode == "off" and again.java_opts("driver") == ""


def test_sharing_off_by_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("FTBRIDGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FTBRIDGE_CDS", "off")
    share = cds.ClassShare(find_java(), spark_home())
    assert share.mode == "off" and share.java_opts("executor", "1") == ""
    assert not (tmp_path / "cache").exists()


def test_archives_of_other_installs_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setenv("FTBRIDGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FTBRIDGE_CDS", "off")  # only the folder layout is needed here
    share = cds.ClassShare(find_java(), spark_home())
    share.dir.mkdir(parents=True)
    for age, name in enumerate(["newest", "second", "third", "oldest"]):
        other = share.dir.parent / name
        other.mkdir()
        (other / "spark.jsa").write_bytes(b"x")
        os.utime(other / "spark.jsa", (1_000_000 - age, 1_000_000 - age))
    share._prune_others()
    assert sorted(p.name for p in share.dir.parent.iterdir()) == sorted([share.dir.name, "newest", "second"])
