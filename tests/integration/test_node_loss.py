"""A Ray node removed while a Spark job runs on it: the job finishes, the lost executor's processes
end, and Spark gets its executor back on another node. On the shared chaos environment (three
worker nodes, the chaos scenarios' Spark session)."""

from __future__ import annotations

import threading
import time

import ftbridge
from ftbridge.chaos.proctable import wait_gone
from ftbridge.cluster.session import wait_for_executors
from tests.conftest import wait_for_running_stage


def test_node_removed_mid_job(chaos_env):
    spark = chaos_env.ensure_spark()
    wait_for_executors(2)
    infos = ftbridge.executors()
    by_node = {n.node_id: n for n in chaos_env.nodes}
    assert all(i.node_id in by_node for i in infos), "executors must run on the worker nodes"
    victim = infos[0]
    result = {}

    def work(x):
        time.sleep(0.4)
        return x * 3

    job = threading.Thread(
        target=lambda: result.setdefault("sum", spark.sparkContext.parallelize(range(40), 40).map(work).sum()))
    job.start()
    try:
        wait_for_running_stage(spark)
        chaos_env.cluster.remove_node(by_node[victim.node_id])
        chaos_env.remove(by_node[victim.node_id])
        assert job.is_alive(), "the job had finished before the node was removed"
        job.join(timeout=300)
        assert not job.is_alive()
        assert result["sum"] == sum(x * 3 for x in range(40))
        assert not wait_gone([victim.jvm_pid, victim.worker_jvm_pid, victim.actor_pid], timeout_s=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            live = [i for i in ftbridge.executors() if i.jvm_pid]
            if len(live) == 2:
                break
            time.sleep(0.5)
        assert len(live) == 2 and victim.node_id not in {i.node_id for i in live}
    finally:
        job.join(timeout=300)
        chaos_env.replenish()
