"""Ray Train on Spark DataFrames: streaming conversions, fit_on_spark with real trainers, runs in the catalog.

Real Ray Train v2 trainers (DataParallelTrainer, XGBoostTrainer) on a local multi-node Ray
cluster, Spark executors on the same nodes; every epoch checked row by row.
"""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest
from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

import ftbridge
import ftbridge.train
from examples import etl_to_xgboost, train_through_node_loss
from ftbridge.chaos import faults
from ftbridge.chaos.resumed import check_resumed, checkpoints_recorded, fail_now, resumable_loop
from ftbridge.chaos.training import epoch_loop
from ftbridge.cluster.session import wait_for_executors
from ftbridge.convert import conversion
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow
from ftbridge.errors import ConfigurationError, PartitionLostError, TrainingFailedError
from ftbridge.lineage import queries
from ftbridge.lineage.audit import run_record
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.writer import flush
from tests.conftest import cli_in_process


@pytest.fixture
def train_cluster(chaos_env):
    """The chaos environment's three worker nodes, shared with the chaos scenarios: each takes one
    Spark executor (1 CPU) and one Train worker (a slot, no CPU). Its Spark session."""
    spark = chaos_env.ensure_spark()
    wait_for_executors(2)
    return spark


def frame(spark, rows=40_000, partitions=8):
    return spark.range(0, rows, numPartitions=partitions).selectExpr(
        "id", "(id * 7) % 1009 as a", "sha1(cast(id as string)) as h")


def two_workers() -> ScalingConfig:
    return ScalingConfig(num_workers=2, resources_per_worker={"train_slot": 1})


def cli(*args) -> dict:
    proc = cli_in_process([*args, "--json"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_streaming_dataset_reads_every_pass_and_rebuilds_a_lost_file(train_cluster, tmp_path):
    catalog = str(tmp_path / "c.duckdb")
    df = frame(train_cluster)
    expected = spark_to_arrow(df)
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog, materialize=False)
    cid = ftbridge.conversion_id(ds)
    with Catalog(catalog).read() as con:
        parts = queries.partitions(con, cid)
        assert [e["kind"] for e in queries.events(con, cid)] == ["created"]  # nothing read yet: lazy
    first = check(expected, read_all(ds))
    os.remove(parts[3]["path"])  # lost between two passes
    second = check(expected, read_all(ds))
    assert first.ok and second.ok, f"{first}; {second}"
    flush(Catalog(catalog))
    with Catalog(catalog).read() as con:
        kinds = [e["kind"] for e in queries.events(con, cid)]
    # every pass reads every partition (a re-read is not a reconstruction in streaming mode)
    assert kinds.count("read") == 2 * len(parts) and "object_reconstructed" not in kinds
    assert kinds.count("spill_missing") == 1 and kinds.count("rebuilt_from_spark") == 1
    ftbridge.release(ds)


def test_a_streaming_partition_nothing_can_rebuild_fails_naming_it(train_cluster, tmp_path):
    """As in a new driver without the Spark session that made it and without a recipe."""
    catalog = str(tmp_path / "c.duckdb")
    made = ftbridge.from_spark_recoverable(frame(train_cluster, 4_000, 2), catalog=catalog)
    cid = ftbridge.conversion_id(made)
    conversion.REGISTRY.forget(cid).batches.unpersist()
    with Catalog(catalog).read() as con:
        lost = queries.partitions(con, cid)[1]
    os.remove(lost["path"])
    ds = ftbridge.open_recoverable(cid, catalog=catalog, materialize=False)  # lazy: no error yet
    with pytest.raises(PartitionLostError) as info:
        read_all(ds)
    assert (info.value.conversion_id, info.value.partition) == (cid, 1)
    ftbridge.release(cid, catalog=catalog)


def _fail_once_registered(out: str, catalog: str, run_name: str, box: dict) -> None:
    """Once Ray Train registered a checkpoint inside epoch 1, have rank 1 raise at its next batch."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with Catalog(catalog).read() as con:
            if queries.run(con, run_name) is not None and checkpoints_recorded(con, run_name, 1):
                fail_now(out)
                box["at"] = time.time()
                return
        time.sleep(0.1)


@pytest.mark.core
def test_a_trainer_built_by_hand_resumes_mid_epoch_each_row_once(train_cluster, tmp_path):
    """A DataParallelTrainer built by hand over a materialized recoverable Dataset, read with
    `ftbridge.train.resumable` (shuffled pieces) and recorded by `ftbridge.train.RunRecorder`: a worker
    fails inside epoch 1 after a registered mid-epoch checkpoint; the restart goes on from its
    position. Every epoch, over the attempts that contributed, saw each row once with its content;
    the rows read again are fewer than one checkpoint interval; the catalog has the resume."""
    catalog, out = str(tmp_path / "c.duckdb"), str(tmp_path / "seen")
    os.makedirs(out)
    df = frame(train_cluster)
    expected = spark_to_arrow(df)
    ds = ftbridge.from_spark_recoverable(df, catalog=catalog, name="by-hand", materialize=True)
    recorder = ftbridge.train.RunRecorder("by-hand", inputs={"train": ds}, catalog=catalog)
    every, batch, workers = 5, 1000, 2
    trainer = DataParallelTrainer(
        resumable_loop, scaling_config=two_workers(),
        train_loop_config={"out": out, "epochs": 3, "batch_size": batch, "report_every": every, "batch_sleep_s": 0.1,
                           "source": ftbridge.train.ResumableSource.of(ds, seed=5)},
        run_config=RunConfig(name="by-hand", storage_path=str(tmp_path / "results"), callbacks=[recorder],
                             failure_config=FailureConfig(max_failures=2)))
    box: dict = {}
    failer = threading.Thread(target=_fail_once_registered, args=(out, catalog, "by-hand", box), daemon=True)
    failer.start()
    result = recorder.fit(trainer)
    failer.join(timeout=60)
    assert "at" in box and os.path.exists(os.path.join(out, "failed-once")), "the failure never landed"
    checks, facts = check_resumed(out, expected, epochs=3)
    assert all(c.ok for c in checks), "; ".join(str(c) for c in checks if not c.ok)
    assert facts["attempts"] == 2 and facts["chain"] == 2 and facts["mid_epoch_resumes"] == 1, facts
    # What the failure cost in rows: what was read after the checkpoint the restart went on from,
    # at most one checkpoint interval on every rank (a plain restart reads the epoch again from its start).
    assert 0 < facts["reconsumed"] <= every * batch * workers, facts
    assert result.metrics["epoch"] == 2 and result.checkpoint is not None

    with Catalog(catalog).read() as con:
        summary, timeline = run_record(con, queries.run(con, "by-hand"))
        conv = queries.conversion(con, "by-hand")
        resumed = [e for e in queries.run_events(con, summary.id) if e["kind"] == "resumed"]
    assert summary.status == "finished" and summary.inputs == {"train": conv["conversion_id"]}
    assert (summary.worker_failures, summary.restarts, summary.resumes) == (1, 1, 1)
    assert summary.epochs_completed == 3 and summary.checkpoints > 3  # mid-epoch ones too
    (ev,) = resumed
    assert ev["epoch"] == 1 and 0 < ev["position"] < 1 and ev["lost_s"] > 0
    assert f"train: resumed epoch 1 at {100 * ev['position']:.0f} %: {ev['lost_s']:.1f} s lost" == ev["detail"]
    assert summary.time_lost_s == pytest.approx(ev["lost_s"])  # the audit's time lost is the resume's
    what = [r.what for r in timeline]
    assert what[0] == "started" and what[-1] == "finished"
    assert what.index("worker_failed") < what.index("resumed")

    shown = cli("show", summary.id[:10], "--catalog", catalog)
    assert [r["what"] for r in shown["timeline"]] == what and shown["run"]["resumes"] == 1
    assert ev["detail"] in [r["detail"] for r in shown["timeline"]]
    ftbridge.release(ds)


def test_xgboost_trainer_fits_on_train_and_evaluation_frames(train_cluster, tmp_path):
    """examples/etl_to_xgboost.py, run on the test cluster: the model fits, the run is recorded."""
    catalog = str(tmp_path / "c.duckdb")
    fit, rmse = etl_to_xgboost.run(train_cluster, catalog=catalog, storage_path=str(tmp_path / "results"),
                                   scaling_config=two_workers())
    assert rmse < 5.0  # y spans -36..192
    assert fit.metrics["evaluation-rmse"] < 5.0
    with Catalog(catalog).read() as con:
        summary, _ = run_record(con, queries.run(con, "xgb"))
    assert summary.trainer == "XGBoostTrainer" and summary.status == "finished"
    assert set(summary.inputs) == {"train", "evaluation"} and summary.checkpoints >= 1
    assert summary.worker_failures == 0


def test_a_long_streaming_run_trains_through_a_node_loss(chaos_env, train_cluster, fault_log, tmp_path):
    """examples/train_through_node_loss.py on the test cluster: once epoch 0 is done, the node of a Train
    worker (an executor's too, with its blocks and spill files) is removed; every epoch of the run
    saw each row once (count and digest sum against Spark's), and the catalog has the failure."""
    removed = []

    def lose(node_id: str) -> None:
        node = chaos_env.node(node_id)
        removed.append(faults.remove_node(chaos_env.cluster, node, fault_log, wipe_spill=True,
                                          spill_root=chaos_env.spill_root))
        chaos_env.remove(node)

    try:
        fit, report = train_through_node_loss.run(train_cluster, lose_node=lose, catalog=str(tmp_path / "c.duckdb"),
                                                  storage_path=str(tmp_path / "results"),
                                                  scaling_config=two_workers())
    finally:
        chaos_env.replenish()
    wait_for_executors(2)
    assert len(removed) == 1, "the node was not removed"
    # The fault landed while training ran: the worker group started again, and Ray Train said why.
    assert report["attempts"] >= 2 and report["epochs"] == [0, 1, 2, 3]
    run = report["run"]
    assert run.status == "finished" and run.epochs_completed == 4 and run.worker_failures >= 1
    assert run.resumes >= 1  # the restart went on from a checkpoint's position in epoch 1
    assert np.allclose(report["weights"], [2.0, -3.0, 1.5], atol=0.25), report["weights"]
    # Both ranks saved the position into every checkpoint, each into its own file (Ray Train uploads
    # the ranks' folders into one at once): both files are whole and say the same.
    with fit.checkpoint.as_directory() as folder:
        names = sorted(n for n in os.listdir(folder) if n.startswith("ftbridge-position"))
        rank0, rank1 = (_positions_without_times(os.path.join(folder, n)) for n in names)
    assert names == [ftbridge.train.POSITION_FILE, "ftbridge-position.rank-1.json"]
    assert rank0 == rank1 and set(rank0) == {"train"}


def _positions_without_times(path: str) -> dict:
    with open(path) as f:
        return {name: {k: v for k, v in pos.items() if k != "at"} for name, pos in json.load(f)["datasets"].items()}


def always_fails(config: dict) -> None:
    raise ValueError("bad feature column 'x9'")


def test_a_failing_trainer_is_recorded_and_raised_as_an_ftbridge_error(train_cluster, tmp_path):
    catalog = str(tmp_path / "c.duckdb")
    with pytest.raises(TrainingFailedError) as info:
        ftbridge.fit_on_spark(DataParallelTrainer, frame(train_cluster, 2_000, 2), name="doomed", catalog=catalog,
                              max_failures=1, storage_path=str(tmp_path / "results"),
                              train_loop_per_worker=always_fails, scaling_config=two_workers())
    assert "bad feature column 'x9'" in str(info.value) and "ftbridge show" in str(info.value)
    with Catalog(catalog).read() as con:
        summary, timeline = run_record(con, queries.run(con, info.value.run_id))
        kept = queries.conversion(con, summary.inputs["train"])
    assert summary.status == "failed" and "x9" in summary.error
    assert summary.worker_failures == 2 and summary.restarts == 1 and timeline[-1].what == "failed"
    assert kept["status"] == "active"  # kept for a retry; released with the Spark session or by hand
    ftbridge.release(kept["conversion_id"], catalog=catalog)


def test_bad_arguments_are_refused_before_any_work(train_cluster, tmp_path):
    catalog = str(tmp_path / "c.duckdb")
    df = frame(train_cluster, 100, 1)
    with pytest.raises(ConfigurationError, match="trainer class"):
        ftbridge.fit_on_spark(DataParallelTrainer(epoch_loop), df, catalog=catalog)
    with pytest.raises(ConfigurationError, match="given twice"):
        ftbridge.fit_on_spark(DataParallelTrainer, df, datasets={"train": df}, catalog=catalog)
    with pytest.raises(ConfigurationError, match="Spark DataFrame or a ray.data.Dataset"):
        ftbridge.fit_on_spark(DataParallelTrainer, df, evaluate_df=[1, 2], catalog=catalog)
    assert not os.path.exists(catalog)  # refused before the catalog was even opened
