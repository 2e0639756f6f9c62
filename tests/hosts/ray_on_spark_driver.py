"""The driver of tests/hosts/test_ray_on_spark.py: a user's PySpark program on a Spark standalone
cluster that ftbridge did not start, with Ray started on that cluster by Ray's own
`ray.util.spark.setup_ray_cluster`, converting with ftbridge.

Each step prints one JSON line ({"step": ...}); where the test injects a fault, the driver waits
for the test's go-file (`$FTBRIDGE_HOSTS_SHARED/go-<step>`) first, so the fault lands while the
work it hits runs.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys

from tests.hosts.driver import PARTS, ROWS, catalog_rows, frame, say, say_checked, wait_go  # the host drivers' steps

MASTER = os.environ["FTBRIDGE_SPARK_MASTER"]


def main() -> None:
    faulthandler.enable()  # a crash in Ray's or Spark's native code says where
    os.environ.pop("RAY_ADDRESS", None)  # setup_ray_cluster sets it to the cluster it starts
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(MASTER).appName("ray-on-spark")
             .config("spark.executor.memory", "768m").config("spark.driver.memory", "768m")
             .config("spark.ui.enabled", "false").getOrCreate())
    import ray
    from ray.util.spark import setup_ray_cluster, shutdown_ray_cluster

    # One Ray worker node per Spark worker host (2 of its executor's 3 cores, so no executor
    # holds two); the head on the driver's host with no CPU, as Ray's docs set it up. No dashboard: with ray[client] alone (no ray[default])
    # setup_ray_cluster would wait 60 s for one that never starts.
    setup_ray_cluster(max_worker_nodes=2, num_cpus_worker_node=2, num_gpus_worker_node=0, num_cpus_head_node=0,
                      memory_worker_node=768 * 2**20, object_store_memory_worker_node=200 * 2**20,
                      head_node_options={"include_dashboard": False})
    ray.init(log_to_driver=False, logging_level=logging.WARNING)

    import ftbridge
    from ftbridge.chaos.scenarios import slowed
    from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow

    catalog = os.environ["FTBRIDGE_CATALOG"]

    def nodes() -> dict[str, str]:
        return {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}

    say("started", nodes=nodes(), spark=spark.version, ray=ray.__version__)

    # 1. A conversion, read on the Ray worker nodes; to_spark back into the user's session.
    df = frame(spark, 3)
    reference = spark_to_arrow(df)
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog, name="ros-plain")
    cid = ftbridge.conversion_id(ds)
    result = check(reference, read_all(ds))
    back_df = ftbridge.to_spark(ds, spark)
    back = spark_to_arrow(back_df)
    jars = spark.sparkContext._jsc.sc().listJars().mkString(",").split(",")
    say_checked(catalog, "converted", cid, result, back_ok=check(reference, back).ok, nodes=nodes(), jars=jars)

    # 2. A spill file deleted (by the test, on its host's disk): Spark writes it again.
    wait_go("deleted")
    result = check(reference, read_all(ftbridge.open_recoverable(cid, catalog=catalog)))
    say_checked(catalog, "rebuilt", cid, result)

    # 3. A Spark executor SIGKILLed (by the test) while the spill job runs.
    df2 = frame(spark, 5)
    reference2 = spark_to_arrow(df2)
    say("spilling")
    ds2 = ftbridge.from_spark_recoverable(slowed(df2, fast=2, per=ROWS // PARTS), catalog=catalog, name="ros-kill")
    cid2 = ftbridge.conversion_id(ds2)
    say_checked(catalog, "executor_killed", cid2, check(reference2, read_all(ds2)))

    # 4. A Spark worker host crashed (by the test) while Ray reads: its Ray worker node and its
    # node-local spill files go with it; Spark writes the lost files again on the host left.
    df3 = frame(spark, 7)
    reference3 = spark_to_arrow(df3)
    ds3 = ftbridge.from_spark_recoverable(df3, catalog=catalog, name="ros-host", materialize=False)
    cid3 = ftbridge.conversion_id(ds3)
    say("reading", cid=cid3, **catalog_rows(catalog, cid3))
    wait_go("crashed")
    say_checked(catalog, "host_crashed", cid3, check(reference3, read_all(ds3)), nodes=nodes())

    freed = {ftbridge.conversion_id(each): ftbridge.release(each) for each in (back_df, ds, ds2, ds3)}
    say("released", freed=freed, **{c: catalog_rows(catalog, c)["parts"] for c in freed})
    for name, stop in (("ray.shutdown", ray.shutdown), ("shutdown_ray_cluster", shutdown_ray_cluster),
                       ("spark.stop", spark.stop)):
        print(f"ray-on-spark driver: {name}()", file=sys.stderr, flush=True)
        try:
            stop()
        except BaseException:
            # Named on stderr, so the test's failure says which of the three ended the program.
            print(f"ray-on-spark driver: {name}() failed", file=sys.stderr, flush=True)
            raise
    say("stopped")


if __name__ == "__main__":
    main()
