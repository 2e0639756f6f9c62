"""Load: 4 threads of one driver and another driver process convert at once into one catalog.

The other driver runs its own embedded Ray (so it has its own catalog writer and the two
really contend for the DuckDB file). Every conversion must be recorded with healthy
partitions, every Dataset must read back row by row, and no catalog lock error may reach a
caller.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading

import pytest

import ftbridge
from ftbridge.convert.ops.rowcheck import check, content_checksum, read_all, spark_to_arrow
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog
from tests.conftest import python_env

CONVERSIONS = 2
OTHER_DRIVERS = 1

DRIVER = textwrap.dedent("""
    import sys, ray, ftbridge
    from ftbridge.convert.ops.rowcheck import read_all, content_checksum
    tag = sys.argv[1]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    spark = ftbridge.init_spark(f"load-{tag}", num_executors=1, executor_cores=1, executor_memory="512MB")
    for i in range(int(sys.argv[2])):
        df = spark.range(0, 30_000, numPartitions=4).selectExpr("id", f"concat('{tag}-{i}-', cast(id as string)) as s")
        ds = ftbridge.from_spark_recoverable(df, name=f"{tag}-{i}")
        print("DONE", f"{tag}-{i}", ftbridge.conversion_id(ds), content_checksum(read_all(ds), "id"), flush=True)
    ftbridge.stop_spark(cleanup_data=False)
""")


def _frame(spark, tag: str):
    return spark.range(0, 30_000, numPartitions=4).selectExpr("id", f"concat('{tag}-', cast(id as string)) as s")


WAIT_S = 420  # each wait below the test's own timeout: a stuck driver fails the test, it is not orphaned


@pytest.mark.timeout(WAIT_S * 2 + 60)
def test_threads_and_another_driver_process_share_one_catalog(spark, tmp_path):
    catalog = str(tmp_path / "shared.duckdb")
    env = {**python_env(), "FTBRIDGE_CATALOG": catalog}
    drivers = [subprocess.Popen([sys.executable, "-c", DRIVER, f"proc{k}", str(CONVERSIONS)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(OTHER_DRIVERS)]
    results: dict[str, tuple[str, bool, str]] = {}
    errors: list[BaseException] = []

    def convert(t: int) -> None:
        try:
            for i in range(CONVERSIONS):
                tag = f"thread{t}-{i}"
                df = _frame(spark, tag)
                ds = ftbridge.from_spark_recoverable(df, catalog=catalog, name=tag)
                outcome = check(spark_to_arrow(df), read_all(ds))
                results[tag] = (ftbridge.conversion_id(ds), outcome.ok, str(outcome))
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=convert, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=WAIT_S)
    outputs = []
    try:
        for proc in drivers:
            out, err = proc.communicate(timeout=WAIT_S)
            outputs.append((proc.returncode, out, err))
    finally:
        for proc in drivers:  # a stuck driver is ended, not orphaned (its reapers end its JVMs)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)
    assert not errors, f"a converting thread failed: {errors[0]!r}"
    assert all(not th.is_alive() for th in threads)
    for code, _out, err in outputs:
        assert code == 0, err[-3000:]
        assert not re.search(r"Catalog\w*Error|could not record", err), err[-3000:]
    assert len(results) == 4 * CONVERSIONS and all(ok for _, ok, _ in results.values()), results

    done = [line.split() for _, out, _ in outputs for line in out.splitlines() if line.startswith("DONE")]
    assert len(done) == OTHER_DRIVERS * CONVERSIONS
    with Catalog(catalog).read() as con:
        recorded = {c["name"]: c for c in queries.conversions(con)}
        for name, cid in [(t, r[0]) for t, r in results.items()] + [(d[1], d[2]) for d in done]:
            assert recorded[name]["conversion_id"] == cid
            states = [p["state"] for p in queries.partitions(con, cid)]
            assert states == ["healthy"] * 4, (name, states)
    for _, name, _cid, checksum in done:  # what each driver read is what its DataFrame holds
        tag, i = name.rsplit("-", 1)
        expected = spark.range(0, 30_000, numPartitions=4).selectExpr(
            "id", f"concat('{tag}-{i}-', cast(id as string)) as s")
        assert checksum == content_checksum(spark_to_arrow(expected), "id"), name
    for cid, _, _ in results.values():
        ftbridge.release(cid, catalog=catalog)
