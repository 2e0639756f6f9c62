"""The bounded chaos subset that runs on every CI run (the full matrix: `tox -e chaos`)."""

from __future__ import annotations

import json

import pytest

from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from chaos.matrix import CI_SUBSET, CORE_SUBSET
from chaos.runner import report, run_one

pytestmark = pytest.mark.chaos
SEED = 11


@pytest.mark.parametrize("scenario", [pytest.param(s, marks=pytest.mark.core) if s in CORE_SUBSET else s
                                      for s in CI_SUBSET])
def test_scenario_recovers_with_nothing_lost(chaos_env, scenario, tmp_path):
    result = run_one(chaos_env, scenario, SEED)
    doc = report([result], str(tmp_path / "report.json"))
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(doc, default=str))
    print(json.dumps(doc, default=str))
    assert result.faults, "no fault was injected"
    assert result.outcome == "recovered", f"{result.outcome}: {result.detail}"
    assert result.rows_lost == result.rows_duplicated == result.rows_unexpected == result.rows_changed == 0
    assert all(c.ok and c.checksum_read == c.checksum_expected for c in result.checks)


def test_fixtures_compose_a_scenario(chaos_env, executor_killer, spill_corruptor, fault_log, tmp_path):
    """The killer fixtures, used directly: kill an executor, corrupt a file, read everything back."""
    import ftbridge
    from lineage import queries
    from lineage.catalog import Catalog

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
