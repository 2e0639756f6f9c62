"""Every scenario by name, and the bounded subset that runs on every CI run."""

from chaos.long_scenarios import LONG_SCENARIOS
from chaos.netscenarios import NET_SCENARIOS
from chaos.scenarios import SCENARIOS as CORE
from chaos.train_scenarios import TRAIN_SCENARIOS

SCENARIOS = {**CORE, **LONG_SCENARIOS, **NET_SCENARIOS, **TRAIN_SCENARIOS}

CI_SUBSET = ["executor_killed_during_conversion", "node_blocks_and_spill_lost", "spill_corrupted",
             "catalog_writer_killed", "driver_killed_reopened", "long_consumer_node_killed",
             "net_driver_link_faults", "net_spill_store_faults", "to_spark_staging_lost", "train_node_removed"]

# Run by CI on the newest releases too: one executor kill, one node loss.
CORE_SUBSET = ["executor_killed_during_conversion", "node_blocks_and_spill_lost"]
