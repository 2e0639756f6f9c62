"""The bounded chaos subset that runs on every CI run (the full matrix: `tox -e chaos`)."""

from __future__ import annotations

import json

import pytest

from chaos.env import ChaosEnv
from chaos.runner import report, run_one
from chaos.matrix import CI_SUBSET

pytestmark = pytest.mark.chaos
SEED = 11


@pytest.fixture(scope="module")
def chaos_env(ray_cluster, tmp_path_factory):
    env = ChaosEnv(ray_cluster, workdir=str(tmp_path_factory.mktemp("chaos")))
    yield env
    env.close()


@pytest.mark.parametrize("scenario", CI_SUBSET)
def test_scenario_recovers_with_nothing_lost(chaos_env, scenario, tmp_path):
    result = run_one(chaos_env, scenario, SEED)
    doc = report([result], str(tmp_path / "report.json"))
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(doc, default=str))
    print(json.dumps(doc, default=str))
    assert result.faults, "no fault was injected"
    assert result.outcome == "recovered", f"{result.outcome}: {result.detail}"
    assert result.rows_lost == result.rows_duplicated == result.rows_unexpected == result.rows_changed == 0
    assert all(c.ok and c.checksum_read == c.checksum_expected for c in result.checks)
