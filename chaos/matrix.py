"""Every scenario by name; what CI runs of them (all, once each), and the newest-releases subset."""

from ftbridge.chaos.long_scenarios import LONG_SCENARIOS
from ftbridge.chaos.netscenarios import NET_SCENARIOS
from ftbridge.chaos.scenarios import SCENARIOS as CORE
from ftbridge.chaos.train_scenarios import TRAIN_SCENARIOS

SCENARIOS = {**CORE, **LONG_SCENARIOS, **NET_SCENARIOS, **TRAIN_SCENARIOS}

# Every CI run runs every scenario once, with a seed derived from the commit (tests/chaos);
# `python -m ftbridge.chaos run --scenarios ci` is the same set. The order spares Spark sessions: the three
# scenarios that stop the session run one after another, so the one a scenario leaves stopped is
# the one the next would stop anyway (spark_stopped_then_blocks_lost ends with no session,
# net_driver_link_faults starts and stops its own proxied one, driver_killed_reopened needs the
# executor slots free for its driver process): two session starts fewer than the dict's order.
_STOPS_SPARK = ["spark_stopped_then_blocks_lost", "net_driver_link_faults", "driver_killed_reopened"]
CI_SUBSET = [s for s in SCENARIOS if s not in _STOPS_SPARK[1:]]
CI_SUBSET[CI_SUBSET.index(_STOPS_SPARK[0]) + 1:CI_SUBSET.index(_STOPS_SPARK[0]) + 1] = _STOPS_SPARK[1:]
assert sorted(CI_SUBSET) == sorted(SCENARIOS)
# `./dev test` leaves out two scenarios whose faults tests/hosts and the other scenarios cover
# (an executor killed, a node's blocks lost: node_blocks_and_spill_lost loses both blocks and
# files, tests/hosts crashes a real host); `tox -e chaos` and `python -m ftbridge.chaos run` run them all.
# Nor spark_stopped_then_blocks_lost (a node's blocks lost after stop_spark, re-read from durable
# spill): test_convert_after_stop reads a conversion back from its files after stop_spark, and
# it paid for the Ray Jobs test on real hosts.
# Nor train_node_removed: examples/train_through_node_loss.py, which test_training runs, removes
# the node of a Train worker in the middle of a streaming run the same way. Nor
# train_worker_killed_resumed: tests/hosts/test_train_hosts.py crashes a real host of a Train
# worker mid-epoch after a registered checkpoint, with the same exactly-once check over the
# contributing attempts, and the epochs after it rebuild the spill files the host's disk took.
# Nor train_spill_lost_between_epochs: train_executor_killed deletes a spill file the streaming
# epoch must rebuild, and the host test loses a host's files between checkpoints.
SUITE_SUBSET = [s for s in CI_SUBSET if s not in ("executor_killed_after_conversion", "node_blocks_lost",
                                                  "spark_stopped_then_blocks_lost", "train_node_removed",
                                                  "train_spill_lost_between_epochs", "train_worker_killed_resumed")]

# Run by CI on the newest releases too: one executor kill, one node loss.
CORE_SUBSET = ["executor_killed_during_conversion", "node_blocks_and_spill_lost"]
