"""The CLI driven as a user would, against real catalogs made by real conversions: `recover` (it
starts Ray and Spark) and a first call in their own process, the other commands through the
console script's own `main()` in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import tests.recipes  # noqa: F401  (the recipes the CLI commands import: an error here fails, never skips)
from ftbridge.chaos.proctable import spark_daemon_jvms, wait_gone
from tests.conftest import REPO_ROOT as REPO
from tests.conftest import cli_in_process, python_env, run_child

DRIVER = textwrap.dedent("""
    import os, sys, time, ray, ftbridge
    ray.init(log_to_driver=False)
    spark = ftbridge.init_spark("cli-driver", num_executors=1, executor_cores=1, executor_memory="512MB")
    from tests.recipes import numbers
    ds1 = ftbridge.from_spark_recoverable(numbers(spark), name="with-recipe", recipe="tests.recipes:numbers")
    ds2 = ftbridge.from_spark_recoverable(numbers(spark).where("a > 10"), name="no-recipe")
    print("IDS", ftbridge.conversion_id(ds1), ftbridge.conversion_id(ds2), flush=True)
    for epoch in range(10**6):   # a long "training" loop, killed by the test
        for batch in ds1.iter_batches(batch_size=1000):
            time.sleep(0.01)
""")


# Commands that start Ray and Spark run in their own process, as a user runs them; the read
# and bookkeeping commands run in this process through the console script's own `main()`
# (same parsing, exit codes and output), which spares a Python start-up per call.
OWN_PROCESS = {"recover"}


def cli(*args, catalog, expect=None, env_extra=None, timeout=300, own_process=False):
    env = {"FTBRIDGE_CATALOG": catalog, **(env_extra or {})}
    if own_process or args[0] in OWN_PROCESS:
        full = {**python_env(), **env, "RAY_ADDRESS": "local"}  # recover starts its own embedded Ray and Spark
        proc = run_child([sys.executable, "-m", "ftbridge.cli.main", *args], env=full, timeout=timeout)
    else:
        proc = cli_in_process(list(args), env)
    if expect is not None:
        assert proc.returncode == expect, f"{args}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def parts(catalog, cid):
    from ftbridge.lineage import queries
    from ftbridge.lineage.catalog import Catalog

    with Catalog(catalog).read() as con:
        return queries.partitions(con, cid)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    catalog = str(tmp_path_factory.mktemp("cli") / "catalog.duckdb")
    env = python_env()
    env["FTBRIDGE_CATALOG"] = catalog
    env["RAY_ADDRESS"] = "local"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = ""
    deadline = time.time() + 240
    while time.time() < deadline and not line.startswith("IDS"):
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise AssertionError(f"driver died: {proc.stderr.read()[-3000:]}")
    _, with_recipe, no_recipe = line.split()
    yield {"proc": proc, "catalog": catalog, "recipe": with_recipe, "plain": no_recipe}
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=60)


def test_healthy_audit_show_and_verify(driver):
    cat = driver["catalog"]
    cli("verify", driver["recipe"], catalog=cat, expect=0, own_process=True)  # the console script, as a user runs it
    cli("verify", "--all", catalog=cat, expect=0)
    doc = json.loads(cli("audit", "--json", catalog=cat, expect=0).stdout)
    by_id = {c["id"]: c for c in doc["conversions"]}
    assert by_id[driver["recipe"]]["partitions"] == {"healthy": 4, "degraded": 0, "lost": 0, "released": 0}
    assert by_id[driver["recipe"]]["rows"] == 30_000 and by_id[driver["recipe"]]["name"] == "with-recipe"
    table = cli("audit", catalog=cat, expect=0).stdout
    for conv in doc["conversions"]:
        assert conv["id"][:12] in table and f"{conv['rows']:,}" in table
    shown = json.loads(cli("show", driver["recipe"][:10], "--json", catalog=cat, expect=0).stdout)
    assert shown["conversion"]["conversion_id"] == driver["recipe"]
    assert [p["partition_id"] for p in shown["partitions"]] == [0, 1, 2, 3]
    assert {"created", "read"} <= {e["kind"] for e in shown["events"]}
    assert "partitions" in cli("show", driver["recipe"], catalog=cat, expect=0).stdout


def test_deleted_file_verify_recover_verify_after_driver_killed(driver):
    cat, proc = driver["catalog"], driver["proc"]
    victim = parts(cat, driver["recipe"])[1]
    os.remove(victim["path"])
    cli("verify", driver["recipe"], catalog=cat, expect=1)   # the driver still lives: rebuildable

    jvms = spark_daemon_jvms()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not wait_gone(jvms, timeout_s=60), "the killed driver's Spark JVMs outlived it"

    cli("verify", driver["recipe"], catalog=cat, expect=1)   # driver gone, recipe left: still rebuildable
    out = cli("recover", driver["recipe"], catalog=cat, expect=0)
    assert "rebuilt" in out.stdout and "partition 1" in out.stdout
    cli("verify", driver["recipe"], catalog=cat, expect=0)
    after = parts(cat, driver["recipe"])[1]
    assert after["state"] == "healthy" and after["rebuilt_count"] == 1
    doc = json.loads(cli("audit", "--json", catalog=cat, expect=0).stdout)
    row = next(c for c in doc["conversions"] if c["id"] == driver["recipe"])
    assert row["rebuilt"] == 1 and row["time_to_recover_s"]["worst"] > 0

    # No recipe and no driver: the data is lost, and recover says so.
    os.remove(parts(cat, driver["plain"])[0]["path"])
    cli("verify", driver["plain"], catalog=cat, expect=2)
    err = cli("recover", driver["plain"], catalog=cat, expect=2).stderr
    assert "no recipe" in err


def test_recipe_that_changed_is_refused(driver, tmp_path):
    cat = driver["catalog"]
    if driver["proc"].poll() is None:
        pytest.fail("runs after the driver-kill test")
    import duckdb

    con = duckdb.connect(cat)
    con.execute("UPDATE conversions SET recipe = 'tests.recipes:numbers_changed' WHERE conversion_id = ?",
                [driver["recipe"]])
    con.close()
    os.remove(parts(cat, driver["recipe"])[2]["path"])
    # examples/morning_after.py, as a cron job runs it: the Python API's verify, recover and gc.
    env = {**python_env(), "RAY_ADDRESS": "local"}
    proc = run_child([sys.executable, str(REPO / "examples" / "morning_after.py"), "--catalog", cat, "--json"],
                     env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["verified"] == {driver["recipe"]: "data_lost", driver["plain"]: "data_lost"}, doc
    (repair,) = doc["repairs"]
    assert repair["id"] == driver["recipe"] and repair["rebuilt"] == []
    assert [f["partition"] for f in repair["failed"]] == [2] and "not deterministic" in repair["failed"][0]["error"]
    assert parts(cat, driver["recipe"])[2]["state"] == "lost"


def test_gc_frees_released_and_expired(driver):
    cat = driver["catalog"]
    dry = json.loads(cli("gc", "--older-than", "0s", "--dry-run", "--json", catalog=cat, expect=0).stdout)
    assert dry["bytes_freed"] > 0 and dry["dry_run"]
    paths = [p["path"] for p in parts(cat, driver["plain"]) if os.path.exists(p["path"])]
    assert paths
    real = json.loads(cli("gc", "--older-than", "0s", "--json", catalog=cat, expect=0).stdout)
    assert real["bytes_freed"] == dry["bytes_freed"]
    assert not any(os.path.exists(p) for p in paths)
    again = json.loads(cli("gc", "--json", catalog=cat, expect=0).stdout)
    assert again["bytes_freed"] == 0
    # History of released conversions: partitions and events go, the conversion rows stay.
    pruned = json.loads(cli("gc", "--events-older-than", "0s", "--json", catalog=cat, expect=0).stdout)["catalog"]
    assert pruned["partitions_removed"] >= len(paths) and pruned["events_removed"] > 0
    assert pruned["catalog_bytes_after"] <= pruned["catalog_bytes_before"]
    assert parts(cat, driver["plain"]) == []
    listed = {c["id"] for c in json.loads(cli("audit", "--json", catalog=cat, expect=0).stdout)["conversions"]}
    assert driver["plain"] in listed


def test_clear_errors_with_distinct_exit_codes(tmp_path):
    """3: bad input (not a catalog, no catalog, unknown id, usage, newer schema); 4: busy, retry."""
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"garbage" * 1000)
    for args in (["audit"], ["verify", "--all"], ["show", "x"]):
        proc = cli(*args, catalog=str(bad), expect=3)
        assert "Error:" in proc.stderr and "not a readable ftbridge catalog" in proc.stderr
        assert "Traceback" not in proc.stderr
    proc = cli("audit", catalog=str(tmp_path / "missing.duckdb"), expect=3)
    assert "no catalog at" in proc.stderr
    good = tmp_path / "good.duckdb"
    from ftbridge.lineage.catalog import Catalog

    with Catalog(good).write():
        pass
    assert "no conversion" in cli("show", "deadbeef", catalog=str(good), expect=3).stderr
    assert "conversion id or --all" in cli("verify", catalog=str(good), expect=3).stderr
    assert "use a number" in cli("gc", "--older-than", "seven", catalog=str(good), expect=3).stderr
    assert "No such command" in cli("bogus", catalog=str(good), expect=3).stderr
    assert "must be a number" in cli("audit", catalog=str(good), expect=3,
                                     env_extra={"FTBRIDGE_CATALOG_LOCK_TIMEOUT_S": "soon"}).stderr
    # Another process holds the catalog's write lock: transient, a retry may pass.
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(good)!r}); "
                               "print('held', flush=True); time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = cli("audit", catalog=str(good), expect=4, env_extra={"FTBRIDGE_CATALOG_LOCK_TIMEOUT_S": "1"})
        assert "is busy" in busy.stderr and "Traceback" not in busy.stderr
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with Catalog(good).write() as con:
        con.execute("UPDATE ftbridge_meta SET value = '99' WHERE key = 'schema_version'")
    assert "schema version 99" in cli("audit", catalog=str(good), expect=3).stderr
    assert "3 bad input" in cli("--help", catalog=str(good), expect=0, own_process=True).stdout
