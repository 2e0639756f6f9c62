"""Chaos with a real trainer: Ray Train (DataParallelTrainer through `ftbridge.fit_on_spark`) reads a
recoverable conversion for several epochs while nodes die, executors are killed and spill files vanish.

Each scenario checks, for every epoch attempt all workers completed, that the workers together
saw every row exactly once with its content (`ftbridge.chaos.training.check_epochs`); that training
finished from its checkpoints; and that the catalog shows the run with its failures.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

from ray.train import ScalingConfig
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

import ftbridge
from ftbridge.chaos import faults
from ftbridge.chaos.env import TRAIN_RESOURCE
from ftbridge.chaos.resumed import check_resumed, checkpoints_recorded, resumable_loop
from ftbridge.chaos.scenarios import Outcome, add_check, frame, partitions_and_events
from ftbridge.chaos.training import check_epochs, epoch_loop, read_progress
from ftbridge.cluster.session import wait_for_executors
from ftbridge.convert.ops.rowcheck import spark_to_arrow
from ftbridge.lineage import queries
from ftbridge.lineage.audit import run_record
from ftbridge.lineage.catalog import Catalog

EPOCHS = 3
WORKERS = 2
FIT_TIMEOUT_S = 360


class BackgroundFit:
    """`fit_on_spark` in a thread so faults can land while it trains; `result()` joins (bounded)."""

    def __init__(self, env, seed: int, name: str, streaming: bool, resumed: bool = False) -> None:
        self.out = os.path.join(env.workdir, f"{name}-{seed}-{time.monotonic_ns()}")
        os.makedirs(self.out)
        self.name = f"{name}-{seed}"
        self.box: dict = {}
        spark = env.ensure_spark()
        self.df = frame(spark, seed)
        self.reference = spark_to_arrow(self.df)
        self.resumed = resumed
        loop = resumable_loop if resumed else epoch_loop
        self.config = {"out": self.out, "epochs": EPOCHS, "batch_size": 1500, "batch_sleep_s": 0.05}
        if resumed:  # smaller batches and a checkpoint every 10 of them (1 s): several inside each epoch
            self.config.update(batch_size=500, report_every=10, batch_sleep_s=0.1)

        def run():
            try:
                self.box["fit"] = ftbridge.fit_on_spark(
                    DataParallelTrainer, self.df, name=self.name, catalog=env.catalog, streaming=streaming,
                    storage_path=os.path.join(self.out, "results"), train_loop_per_worker=loop,
                    scaling_config=ScalingConfig(num_workers=WORKERS, resources_per_worker={TRAIN_RESOURCE: 1}),
                    train_loop_config=self.config)
            except BaseException as exc:  # raised by result()
                self.box["error"] = exc

        self.thread = threading.Thread(target=run, name=f"fit-{name}", daemon=True)
        self.thread.start()

    def progress(self) -> list[dict]:
        return read_progress(self.out)

    def wait_for(self, predicate, what: str, timeout_s: float = 240) -> list[dict]:
        """Wait until `predicate(progress)` holds; fail if training ended or the time ran out first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            seen = self.progress()
            if predicate(seen):
                return seen
            if not self.thread.is_alive():
                break
            time.sleep(0.05)
        raise TimeoutError(f"{self.name}: {what} did not happen (training alive: {self.thread.is_alive()})")

    def wait_registered(self, env, epoch: int, timeout_s: float = 240) -> None:
        """Until Ray Train has registered a checkpoint inside `epoch` (the recorder put it in the catalog)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.thread.is_alive():
            if os.path.exists(env.catalog):  # the run's conversion makes it
                with Catalog(env.catalog).read() as con:
                    if checkpoints_recorded(con, self.name, epoch):
                        return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name}: no checkpoint inside epoch {epoch} was registered "
                           f"(training alive: {self.thread.is_alive()})")

    def conversion_id(self, env) -> str:
        with Catalog(env.catalog).read() as con:
            return queries.conversion(con, f"{self.name}:train")["conversion_id"]

    def result(self):
        self.thread.join(FIT_TIMEOUT_S)
        if self.thread.is_alive():
            raise TimeoutError(f"{self.name}: training did not finish within {FIT_TIMEOUT_S}s")
        if "error" in self.box:
            raise self.box["error"]
        return self.box["fit"]


def in_epoch(epoch: int, batch: int):
    return lambda seen: any(p["kind"] == "batch" and p["epoch"] == epoch and p["batch"] >= batch for p in seen)


def epoch_reported(epoch: int):
    return lambda seen: any(p["kind"] == "epoch_done" and p["epoch"] == epoch for p in seen)


def finish(env, job: BackgroundFit, out: Outcome, started: float, want_failures: int, want_rebuilt: int = 0) -> None:
    """Join training, check every completed epoch attempt row by row, and check the run's record."""
    fit = job.result()
    if job.resumed:
        checks, facts = check_resumed(job.out, job.reference, EPOCHS)
    else:
        checks, facts = check_epochs(job.out, job.reference, WORKERS, EPOCHS)
    for c in checks:
        add_check(out, c)
    out.recover_seconds = round(time.monotonic() - started, 3)
    with Catalog(env.catalog).read() as con:
        run = queries.run(con, fit.run_id)
        if run is None:
            raise AssertionError(f"the catalog has no run {fit.run_id}")
        summary, timeline = run_record(con, run)
    if summary.status != "finished" or summary.epochs_completed != EPOCHS:
        raise AssertionError(f"run recorded as {summary.status} with {summary.epochs_completed} epochs")
    if summary.worker_failures < want_failures:
        raise AssertionError(f"the audit shows {summary.worker_failures} worker failures, expected "
                             f">= {want_failures}: {[r.what for r in timeline]}")
    if summary.rebuilt < want_rebuilt:
        raise AssertionError(f"the audit shows {summary.rebuilt} rebuilds during the run, expected >= {want_rebuilt}")
    if job.resumed and want_failures and (facts["mid_epoch_resumes"] < 1 or summary.resumes < 1):
        raise AssertionError(f"no restart went on mid-epoch: {facts}, {summary.resumes} resumes in the catalog")
    if job.resumed:
        out.detail = (f"{len(checks)} epochs checked over {facts['chain']} contributing of {facts['attempts']} "
                      f"attempts, {facts['mid_epoch_resumes']} mid-epoch resumes, {facts['reconsumed']} rows "
                      f"consumed again, {summary.worker_failures} worker failures, {summary.rebuilt} rebuilt, "
                      f"time lost {summary.time_lost_s:.1f}s")
        return
    out.detail = (f"{len(checks)} epoch attempts checked ({facts['attempts']} worker-group starts), "
                  f"{summary.worker_failures} worker failures, {summary.rebuilt} rebuilt, "
                  f"{summary.reconstructed} reconstructed, time lost {summary.time_lost_s:.1f}s")


def train_node_removed(env, seed, out: Outcome):
    """A node holding a Train worker and an executor (and blocks, spill files) is removed inside epoch 1
    after mid-epoch checkpoints; the restarted group goes on from the last one's position."""
    rng = random.Random(seed)
    job = BackgroundFit(env, seed, "train-node", streaming=seed % 2 == 1, resumed=True)
    job.wait_registered(env, 1)
    seen = job.progress()
    train_nodes = {p["node"] for p in seen if p["kind"] == "attempt"}
    executor_nodes = {e.node_id for e in ftbridge.executors()}
    worker_ids = {n.node_id for n in env.nodes}
    victims = sorted((train_nodes & executor_nodes & worker_ids) or (train_nodes & worker_ids))
    if not victims:
        raise RuntimeError(f"no worker node runs a Train worker (train nodes {train_nodes})")
    started = time.monotonic()
    victim = rng.choice(victims)
    faults.remove_node(env.cluster, env.node(victim), out.log, wipe_spill=True, spill_root=env.spill_root)
    env.remove(env.node(victim))
    finish(env, job, out, started, want_failures=1)
    wait_for_executors(2)


def train_worker_killed_resumed(env, seed, out: Outcome):
    """A Train worker is SIGKILLed inside epoch 1 once Ray Train registered a checkpoint there, and a
    spill file is deleted: the restarted group goes on from that checkpoint's position (rebuilding
    the file), each row of every epoch once over the attempts that contributed."""
    rng = random.Random(seed)
    job = BackgroundFit(env, seed, "train-resume", streaming=True, resumed=True)
    job.wait_registered(env, 1)
    seen = job.progress()
    started = time.monotonic()
    workers = [p for p in seen if p["kind"] == "attempt"]
    victim = rng.choice(workers)
    os.kill(victim["pid"], signal.SIGKILL)
    out.log.add("train_worker_killed", str(victim["pid"]), rank=victim["rank"], epoch=1)
    parts, _ = partitions_and_events(env, job.conversion_id(env))
    faults.corrupt_spill(rng.choice(parts)["path"], "delete", rng, out.log)
    finish(env, job, out, started, want_failures=1)


def train_executor_killed(env, seed, out: Outcome):
    """An executor is killed while epoch 1 streams, and a spill file it must rebuild is deleted."""
    rng = random.Random(seed)
    job = BackgroundFit(env, seed, "train-exec", streaming=True)
    job.wait_for(in_epoch(1, 0), "epoch 1")
    started = time.monotonic()
    faults.kill_executor(out.log, rng)
    parts, _ = partitions_and_events(env, job.conversion_id(env))
    faults.corrupt_spill(rng.choice(parts)["path"], "delete", rng, out.log)
    finish(env, job, out, started, want_failures=0, want_rebuilt=1)
    wait_for_executors(2)


def train_spill_lost_between_epochs(env, seed, out: Outcome):
    """After epoch 0 is reported, two spill files are deleted or damaged before epoch 1 reads them."""
    rng = random.Random(seed)
    job = BackgroundFit(env, seed, "train-spill", streaming=True)
    job.wait_for(epoch_reported(0), "epoch 0's report")
    started = time.monotonic()
    parts, _ = partitions_and_events(env, job.conversion_id(env))
    for part in rng.sample(parts, 2):
        faults.corrupt_spill(part["path"], rng.choice(["delete", "truncate", "flip"]), rng, out.log)
    finish(env, job, out, started, want_failures=0, want_rebuilt=2)


TRAIN_SCENARIOS = {
    "train_node_removed": train_node_removed,
    "train_executor_killed": train_executor_killed,
    "train_spill_lost_between_epochs": train_spill_lost_between_epochs,
    "train_worker_killed_resumed": train_worker_killed_resumed,
}
