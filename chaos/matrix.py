"""Every scenario by name; what CI runs of them (all, once each), and the newest-releases subset."""

from chaos.long_scenarios import LONG_SCENARIOS
from chaos.netscenarios import NET_SCENARIOS
from chaos.scenarios import SCENARIOS as CORE
from chaos.train_scenarios import TRAIN_SCENARIOS

SCENARIOS = {**CORE, **LONG_SCENARIOS, **NET_SCENARIOS, **TRAIN_SCENARIOS}

# Every CI run runs every scenario once, with a seed derived from the commit (tests/chaos);
# `python -m chaos run --scenarios ci` is the same set.
CI_SUBSET = list(SCENARIOS)

# Run by CI on the newest releases too: one executor kill, one node loss.
CORE_SUBSET = ["executor_killed_during_conversion", "node_blocks_and_spill_lost"]
