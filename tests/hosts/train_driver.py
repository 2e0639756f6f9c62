"""The driver of tests/hosts/test_train_hosts.py: Ray Train (`fit_on_spark`, DataParallelTrainer,
two workers, streaming, the resumable iterator) on the head host of real hosts, while the test
crashes the host of one Train worker mid-epoch. Steps as in driver.py."""

from __future__ import annotations

import logging
import os
import sys

from tests.hosts.driver import SHARED, catalog_rows, say

EPOCHS = 3
ROWS = 60_000  # 60 batches of 500 rows per rank and epoch


def main() -> None:
    import ray
    from ray.train import ScalingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    import ftbridge
    from ftbridge.chaos.resumed import check_resumed, resumable_loop
    from ftbridge.convert.ops.rowcheck import spark_to_arrow
    from ftbridge.lineage import queries
    from ftbridge.lineage.audit import run_record
    from ftbridge.lineage.catalog import Catalog

    catalog = os.environ["FTBRIDGE_CATALOG"]
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    spark = ftbridge.init_spark("hosts-train", num_executors=2, executor_cores=1, executor_memory="512m")
    df = spark.range(0, ROWS, numPartitions=8).selectExpr("id", "(id * 29) % 1009 as a", "sha1(cast(id as string)) as h")
    reference = spark_to_arrow(df)
    out = os.path.join(SHARED, "train-progress")
    os.makedirs(out)
    say("training", out=out, nodes={n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]})
    # Batches of 500 rows, a checkpoint every 10 of them (about 1 s): several inside each epoch.
    fit = ftbridge.fit_on_spark(
        DataParallelTrainer, df, name="hosts-train", catalog=catalog, streaming=True,
        storage_path=os.path.join(SHARED, "train-results"), train_loop_per_worker=resumable_loop,
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        train_loop_config={"out": out, "epochs": EPOCHS, "batch_size": 500, "report_every": 10, "batch_sleep_s": 0.1})
    checks, facts = check_resumed(out, reference, EPOCHS)
    with Catalog(catalog).read() as con:
        summary, timeline = run_record(con, queries.run(con, fit.run_id))
        cid = queries.conversion(con, "hosts-train:train")["conversion_id"]

    say("trained", cid=cid, ok=all(c.ok for c in checks), result="; ".join(str(c) for c in checks),
        facts=facts, status=summary.status, epochs_completed=summary.epochs_completed,
        worker_failures=summary.worker_failures, resumes=summary.resumes, rebuilt=summary.rebuilt,
        time_lost_s=summary.time_lost_s, timeline=[r.what for r in timeline], **catalog_rows(catalog, cid))
    ftbridge.stop_spark(cleanup_data=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    main()
