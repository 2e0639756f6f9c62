"""The chaos scenarios, once each, with the commit's seed (all but two: see chaos/matrix.py; the full
matrix, 3 seeds each: `tox -e chaos`)."""

from __future__ import annotations

import json

import pytest

from ftbridge.chaos.matrix import CORE_SUBSET, SUITE_SUBSET
from ftbridge.chaos.runner import report, run_one
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow

pytestmark = pytest.mark.chaos


@pytest.mark.parametrize("scenario", [pytest.param(s, marks=pytest.mark.core) if s in CORE_SUBSET else s
                                      for s in SUITE_SUBSET])
def test_scenario_recovers_with_nothing_lost(chaos_env, scenario, chaos_seed, tmp_path):
    result = run_one(chaos_env, scenario, chaos_seed)
    report([result], str(tmp_path / "report.json"))
    (written,) = json.loads((tmp_path / "report.json").read_text())["scenarios"]
    print(json.dumps(written))
    # The report says what the run did: the scenario, its seed, its outcome, every injected fault.
    assert (written["scenario"], written["seed"], written["outcome"]) == (scenario, chaos_seed, result.outcome)
    assert [(f["kind"], f["target"]) for f in written["faults"]] == [(f["kind"], f["target"]) for f in result.faults]
    assert written["rows_lost"] == result.rows_lost and written["rows_changed"] == result.rows_changed
    assert result.faults, "no fault was injected"
    assert result.outcome == "recovered", (f"{result.outcome}: {result.detail} (reproduce: python -m ftbridge.chaos run "
                                           f"--scenarios {scenario} --seed {chaos_seed})")
    assert result.rows_lost == result.rows_duplicated == result.rows_unexpected == result.rows_changed == 0
    assert all(c.ok and c.checksum_read == c.checksum_expected for c in result.checks)


def test_fixtures_compose_a_scenario(chaos_env, executor_killer, spill_corruptor, fault_log, tmp_path):
    """The killer fixtures, used directly: kill an executor, corrupt a file, read everything back."""
    import ftbridge
    from ftbridge.lineage import queries
    from ftbridge.lineage.catalog import Catalog

    spark = chaos_env.ensure_spark()
    df = spark.range(0, 20_000, numPartitions=4).selectExpr("id", "id % 7 as m")
    reference = spark_to_arrow(df)
    ds = ftbridge.from_spark_recoverable(df, catalog=chaos_env.catalog)
    cid = ftbridge.conversion_id(ds)
    executor_killer()
    with Catalog(chaos_env.catalog).read() as con:
        path = queries.partitions(con, cid)[1]["path"]
    spill_corruptor(path, "truncate")
    result = check(reference, read_all(ftbridge.open_recoverable(cid, catalog=chaos_env.catalog)))
    assert result.ok, str(result)
    assert [f["kind"] for f in fault_log.to_list()] == ["executor_killed", "spill_corrupted"]
    assert fault_log.to_list()[0]["detail"]["jvms_left"] == []


def test_the_other_fixtures_compose_a_scenario(chaos_env, random_executor_killer, writer_killer, pauser,
                                               node_killer, fault_log):
    """The seeded random killer, the writer killer, the pauser and the node killer, used directly:
    each fault lands while a conversion or a read is under way, and every row comes back."""
    import ftbridge
    from ftbridge.chaos.scenarios import block_node
    from ftbridge.cluster.session import wait_for_executors
    from ftbridge.lineage.catalog import Catalog
    from ftbridge.lineage.writer import flush

    spark = chaos_env.ensure_spark()
    df = spark.range(0, 20_000, numPartitions=4).selectExpr("id", "sha1(cast(id as string)) as h")
    reference = spark_to_arrow(df)
    with random_executor_killer(max_kills=1, min_gap_s=0.1, max_gap_s=1.0) as killer:
        for _ in range(5):  # until the kill has landed during a conversion
            ds = ftbridge.from_spark_recoverable(df, catalog=chaos_env.catalog)
            if killer.killed:
                break
    killer.require_kills(1)
    wait_for_executors(2)
    flush(Catalog(chaos_env.catalog))  # the read events say which nodes hold blocks of ds
    victim = block_node(chaos_env, ftbridge.conversion_id(ds))[0]
    writer_killer(chaos_env.catalog)
    pauser(seconds=2.0)  # a stall shorter than Spark's heartbeat timeout: nobody is declared lost
    node_killer(victim)
    try:
        result = check(reference, read_all(ds))
        assert result.ok, str(result)
    finally:
        chaos_env.replenish()
        wait_for_executors(2)
    assert [f["kind"] for f in fault_log.to_list()] == ["executor_killed", "catalog_writer_killed",
                                                        "executor_paused", "node_removed"]
