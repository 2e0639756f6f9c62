"""A long training job that loses a node mid-epoch and carries on, with nothing lost: `fit_on_spark`.

Spark's ETL output streams into Ray Train (`streaming=True`: the object store holds a window of
blocks, not the dataset), each worker fits a linear model by SGD over its batches and
checkpoints every epoch, and the model is the workers' average. While epoch 1 runs, a node
holding a Train worker (and a Spark executor, its blocks and spill files) is removed: Ray Train
restarts the workers from the last checkpoint, ftbridge rebuilds the lost blocks from Spark, and
the catalog records the failure and what it cost.

Every completed epoch proves it saw each row exactly once: the workers count their rows and add
up a per-row digest computed in Spark (xxhash64 of the id and the content), which must equal
Spark's own count and sum.

Run: python examples/train_through_node_loss.py   (a local Ray cluster of a head and three
worker nodes, Spark on it; about 3 minutes, most of it Ray noticing the lost node)
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable

import numpy as np
import ray
import ray.train
from ray.cluster_utils import Cluster
from ray.train import ScalingConfig
from ray.train.collective import broadcast_from_rank_zero
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

import ftbridge

FEATURES = ["x1", "x2"]
MASK = (1 << 64) - 1   # digests add up modulo 2**64
SLOT = "train_slot"    # one Train worker per worker node; the node's CPU is its executor's


def frame(spark, rows: int = 60_000):
    """The ETL: features, a label, and the per-row digest the epochs are checked with."""
    return spark.range(0, rows, numPartitions=8).selectExpr(
        "id", "cast(id % 89 as double) / 89 as x1", "cast(id % 31 as double) / 31 as x2").selectExpr(
        "id", "x1", "x2", "1.5 + 2.0 * x1 - 3.0 * x2 as y", "xxhash64(id, x1, x2) as digest")


def _state(checkpoint) -> tuple[int, np.ndarray]:
    """(first epoch to run, weights): the average of the workers' weights in the checkpoint."""
    if checkpoint is None:
        return 0, np.zeros(len(FEATURES) + 1)
    with checkpoint.as_directory() as folder:
        saved = [json.load(open(path)) for path in sorted(glob.glob(os.path.join(folder, "rank-*.json")))]
    return saved[0]["epoch"] + 1, np.mean([s["w"] for s in saved], axis=0)


def train_loop(config: dict) -> None:
    """Runs in each Ray Train worker: SGD over its streamed shard, a checkpoint and a ledger entry per epoch."""
    rank = ray.train.get_context().get_world_rank()
    attempt = broadcast_from_rank_zero(uuid.uuid4().hex[:12])  # one id per start of the worker group
    start, w = _state(ray.train.get_checkpoint())
    shard = ray.train.get_dataset_shard("train")
    ledger = os.path.join(config["storage_path"], "ledger")
    os.makedirs(ledger, exist_ok=True)
    for epoch in range(start, config["epochs"]):
        rows, digest, loss = 0, 0, 0.0
        for batch in shard.iter_batches(batch_size=1_000, batch_format="numpy"):
            x = np.column_stack([*(batch[f] for f in FEATURES), np.ones(len(batch["y"]))])
            error = x @ w - batch["y"]
            w -= config["lr"] * x.T @ error / len(error)
            rows, loss = rows + len(error), loss + float(error @ error)
            digest = (digest + int(batch["digest"].astype(np.uint64).sum(dtype=np.uint64))) & MASK
            time.sleep(config.get("step_s", 0.0))  # stands in for a bigger model's step
        entry = {"attempt": attempt, "epoch": epoch, "rank": rank, "rows": rows, "digest": digest,
                 "node": ray.get_runtime_context().get_node_id()}
        path = os.path.join(ledger, f"{attempt}-e{epoch}-r{rank}.json")
        with open(path + ".part", "w") as f:
            json.dump(entry, f)
        os.replace(path + ".part", path)  # the watcher never reads half an entry
        with tempfile.TemporaryDirectory(dir=ledger) as folder:
            with open(os.path.join(folder, f"rank-{rank}.json"), "w") as f:
                json.dump({"epoch": epoch, "w": w.tolist()}, f)
            ray.train.report({"epoch": epoch, "mse": loss / max(rows, 1)},
                             checkpoint=ray.train.Checkpoint.from_directory(folder))


def read_ledger(storage_path: str) -> list[dict]:
    entries = []
    for path in glob.glob(os.path.join(storage_path, "ledger", "*.json")):
        with open(path) as f:
            entries.append(json.load(f))
    return entries


def check_epochs(entries: list[dict], workers: int, epochs: int, rows: int, digest: int) -> dict:
    """Each epoch has a start of the worker group whose workers together saw every row once."""
    by_attempt: dict[tuple[str, int], list[dict]] = {}
    for e in entries:
        by_attempt.setdefault((e["attempt"], e["epoch"]), []).append(e)
    complete = {}
    for (attempt, epoch), ranks in sorted(by_attempt.items(), key=lambda kv: kv[0][1]):
        if len(ranks) < workers:
            continue  # cut short by the failure
        seen, summed = sum(r["rows"] for r in ranks), sum(r["digest"] for r in ranks) & MASK
        if (seen, summed) != (rows, digest):
            raise RuntimeError(f"epoch {epoch} (attempt {attempt}) saw {seen} rows with digest {summed:#x}; "
                               f"Spark has {rows} rows with digest {digest:#x}")
        complete[epoch] = attempt
    if sorted(complete) != list(range(epochs)):
        raise RuntimeError(f"epochs {sorted(set(range(epochs)) - set(complete))} never completed")
    return {"epochs": sorted(complete), "attempts": len({a for a, _ in by_attempt})}


def lose_a_node_in_epoch(storage_path: str, epoch: int, lose_node: Callable[[str], None],
                         timeout_s: float = 300) -> threading.Thread:
    """In the background: once every worker has finished epoch `epoch - 1`, remove a node running one."""
    def watch():
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = [e for e in read_ledger(storage_path) if e["epoch"] == epoch - 1]
            if done:
                lose_node(sorted(e["node"] for e in done)[0])
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, name="lose-a-node", daemon=True)
    thread.start()
    return thread


def run(spark, *, lose_node: Callable[[str], None], catalog: str | None = None, storage_path: str,
        scaling_config: ScalingConfig, epochs: int = 4, step_s: float = 0.05) -> tuple[ftbridge.FitResult, dict]:
    """Train through a node loss in epoch 1; (the fit, what was checked, the run's record, the model)."""
    df = frame(spark)
    digests = df.select("digest").toPandas()["digest"]
    rows, digest = len(digests), sum(int(d) & MASK for d in digests) & MASK
    loser = lose_a_node_in_epoch(storage_path, 1, lose_node)
    fit = ftbridge.fit_on_spark(DataParallelTrainer, df, name="through-node-loss", catalog=catalog,
                                storage_path=storage_path, train_loop_per_worker=train_loop,
                                train_loop_config={"storage_path": storage_path, "epochs": epochs, "lr": 0.5,
                                                   "step_s": step_s},
                                scaling_config=scaling_config)
    loser.join(5)
    checked = check_epochs(read_ledger(storage_path), scaling_config.num_workers, epochs, rows, digest)
    _, weights = _state(fit.checkpoint)
    record = ftbridge.show(fit.run_id, catalog=catalog)
    return fit, {**checked, "weights": [round(v, 3) for v in weights], "run": record.run}


def main() -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    nodes = {}
    for _ in range(3):
        node = cluster.add_node(num_cpus=1, resources={SLOT: 1})
        nodes[node.node_id] = node
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    spark = ftbridge.init_spark("through-node-loss", num_executors=2, executor_cores=1, executor_memory="768MB")
    try:
        with tempfile.TemporaryDirectory(prefix="ftbridge-example-") as tmp:
            fit, report = run(spark, lose_node=lambda node_id: cluster.remove_node(nodes.pop(node_id)),
                              catalog=f"{tmp}/catalog.duckdb", storage_path=f"{tmp}/results",
                              scaling_config=ScalingConfig(num_workers=2, resources_per_worker={SLOT: 1}))
            run_ = report["run"]
            print(f"run {fit.run_id}: epochs {report['epochs']} each saw every row once, over "
                  f"{report['attempts']} starts of the worker group; {run_.worker_failures} worker failure(s), "
                  f"{run_.rebuilt} partition(s) rebuilt, {run_.time_lost_s:.1f}s lost; "
                  "model y = {2:.2f} {0:+.2f} x1 {1:+.2f} x2 (the data's: 1.50 +2.00 x1 -3.00 x2)".format(*report["weights"]))
    finally:
        ftbridge.stop_spark(cleanup_data=True)
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
