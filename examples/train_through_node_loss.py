"""A long training job that loses a node mid-epoch and carries on, with nothing lost: `fit_on_spark`.

Spark's ETL output streams into Ray Train (`streaming=True`: spill files are read as the epoch
goes), each worker fits a linear model by SGD over its batches, read with
`ftbridge.train.resumable("train")`, and checkpoints every 10 batches with the data's position;
the model is the workers' average. While epoch 1 runs, a node holding a Train worker (and a
Spark executor, its spill files) is removed: Ray Train restarts the workers from the last
checkpoint, the epoch goes on from that checkpoint's position (not from its start), ftbridge
rebuilds the lost files from Spark, and the catalog records the failure, the resume and what it
cost.

Every epoch proves it saw each row exactly once: the workers count their rows and add up a
per-row digest computed in Spark (xxhash64 of the id and the content), carried in the checkpoints
across the restart; the totals must equal Spark's own count and sum.

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
import ftbridge.train

FEATURES = ["x1", "x2"]
MASK = (1 << 64) - 1   # digests add up modulo 2**64
SLOT = "train_slot"    # one Train worker per worker node; the node's CPU is its executor's


def frame(spark, rows: int = 60_000):
    """The ETL: features, a label, and the per-row digest the epochs are checked with."""
    return spark.range(0, rows, numPartitions=8).selectExpr(
        "id", "cast(id % 89 as double) / 89 as x1", "cast(id % 31 as double) / 31 as x2").selectExpr(
        "id", "x1", "x2", "1.5 + 2.0 * x1 - 3.0 * x2 as y", "xxhash64(id, x1, x2) as digest")


def _state(checkpoint, rank: int) -> tuple[np.ndarray, int, int]:
    """(weights, rows, digest) from the checkpoint: the average of the workers' weights, and the
    rows and digest sum the epoch had reached there (taken up by rank 0 alone)."""
    if checkpoint is None:
        return np.zeros(len(FEATURES) + 1), 0, 0
    with checkpoint.as_directory() as folder:
        saved = [json.load(open(path)) for path in sorted(glob.glob(os.path.join(folder, "rank-*.json")))]
    w = np.mean([s["w"] for s in saved], axis=0)
    if rank != 0:
        return w, 0, 0
    return w, sum(s["rows"] for s in saved), sum(s["digest"] for s in saved) & MASK


def _write(path: str, entry: dict) -> None:
    with open(path + ".part", "w") as f:
        json.dump(entry, f)
    os.replace(path + ".part", path)  # the watcher never reads half an entry


def train_loop(config: dict) -> None:
    """Runs in each Ray Train worker: SGD over its share of each epoch, read with
    `ftbridge.train.resumable` (a restart goes on from the checkpoint's position), a checkpoint
    every `every` batches and at the epoch's end, a ledger entry per epoch."""
    rank = ray.train.get_context().get_world_rank()
    attempt = broadcast_from_rank_zero(uuid.uuid4().hex[:12])  # one id per start of the worker group
    data = ftbridge.train.resumable("train", batch_size=500, batch_format="numpy")
    w, rows, digest = _state(ray.train.get_checkpoint(), rank)
    ledger = os.path.join(config["storage_path"], "ledger")
    os.makedirs(ledger, exist_ok=True)
    node = ray.get_runtime_context().get_node_id()
    for epoch in data.epochs(config["epochs"]):
        loss = 0.0
        for i, batch in enumerate(data.iter_batches()):
            x = np.column_stack([*(batch[f] for f in FEATURES), np.ones(len(batch["y"]))])
            error = x @ w - batch["y"]
            w -= config["lr"] * x.T @ error / len(error)
            rows, loss = rows + len(error), loss + float(error @ error)
            digest = (digest + int(batch["digest"].astype(np.uint64).sum(dtype=np.uint64))) & MASK
            time.sleep(config.get("step_s", 0.0))  # stands in for a bigger model's step
            if (i + 1) % config["every"] == 0:  # the model and the epoch's rows so far, with the data's position
                _checkpoint(data, ledger, {"epoch": epoch, "rank": rank, "w": w.tolist(), "rows": rows,
                                           "digest": digest}, loss)
                _write(os.path.join(ledger, f"{attempt}-e{epoch}-r{rank}-b{i}.json"),
                       {"kind": "checkpoint", "attempt": attempt, "epoch": epoch, "rank": rank, "node": node})
        _write(os.path.join(ledger, f"{attempt}-e{epoch}-r{rank}.json"),
               {"kind": "epoch", "attempt": attempt, "epoch": epoch, "rank": rank, "rows": rows, "digest": digest,
                "node": node})
        _checkpoint(data, ledger, {"epoch": epoch, "rank": rank, "w": w.tolist(), "rows": 0, "digest": 0}, loss)
        rows, digest = 0, 0


def _checkpoint(data, ledger: str, state: dict, loss: float) -> None:
    with tempfile.TemporaryDirectory(dir=ledger) as folder:
        with open(os.path.join(folder, f"rank-{state['rank']}.json"), "w") as f:
            json.dump(state, f)
        data.report({"epoch": state["epoch"], "mse": loss / max(state["rows"], 1)}, checkpoint_dir=folder)


def read_ledger(storage_path: str) -> list[dict]:
    entries = []
    for path in glob.glob(os.path.join(storage_path, "ledger", "*.json")):
        with open(path) as f:
            entries.append(json.load(f))
    return entries


def check_epochs(entries: list[dict], workers: int, epochs: int, rows: int, digest: int) -> dict:
    """Each epoch has a start of the worker group whose workers together saw every row once (with
    what the checkpoint it went on from had counted)."""
    by_attempt: dict[tuple[str, int], list[dict]] = {}
    for e in entries:
        if e["kind"] == "epoch":
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
    """In the background: once rank 0 has made three checkpoints inside `epoch`, remove a node running a worker."""
    def watch():
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            made = [e for e in read_ledger(storage_path) if e["kind"] == "checkpoint" and e["epoch"] == epoch]
            if sum(1 for e in made if e["rank"] == 0) >= 3:
                lose_node(sorted(e["node"] for e in made)[0])
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, name="lose-a-node", daemon=True)
    thread.start()
    return thread


def run(spark, *, lose_node: Callable[[str], None], catalog: str | None = None, storage_path: str,
        scaling_config: ScalingConfig, epochs: int = 4, step_s: float = 0.05, every: int = 10
        ) -> tuple[ftbridge.FitResult, dict]:
    """Train through a node loss in epoch 1; (the fit, what was checked, the run's record, the model)."""
    df = frame(spark)
    digests = df.select("digest").toPandas()["digest"]
    rows, digest = len(digests), sum(int(d) & MASK for d in digests) & MASK
    loser = lose_a_node_in_epoch(storage_path, 1, lose_node)
    fit = ftbridge.fit_on_spark(DataParallelTrainer, df, name="through-node-loss", catalog=catalog,
                                storage_path=storage_path, train_loop_per_worker=train_loop,
                                train_loop_config={"storage_path": storage_path, "epochs": epochs, "lr": 0.5,
                                                   "step_s": step_s, "every": every},
                                scaling_config=scaling_config)
    loser.join(5)
    checked = check_epochs(read_ledger(storage_path), scaling_config.num_workers, epochs, rows, digest)
    weights, _, _ = _state(fit.checkpoint, 0)
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
                  f"{run_.resumes} resumed mid-epoch, {run_.rebuilt} partition(s) rebuilt, {run_.time_lost_s:.1f}s lost; "
                  "model y = {2:.2f} {0:+.2f} x1 {1:+.2f} x2 (the data's: 1.50 +2.00 x1 -3.00 x2)".format(*report["weights"]))
    finally:
        ftbridge.stop_spark(cleanup_data=True)
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
