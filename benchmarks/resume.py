"""A failure late in a long epoch: ftbridge's mid-epoch resume vs a plain Ray Train restart.

    ./dev bench resume [--rounds 3] [--rows 2000000] [--fail-at 0.75]

One embedded Ray (4 CPUs), Spark on it (2 executors x 1 core), one streaming recoverable
conversion of `--rows` rows, read by a DataParallelTrainer (2 workers) for 2 epochs, batches of
2,000 rows with 20 ms of "compute" each, a checkpoint every 50 batches (10 % of an epoch) in
both modes. Same fault schedule in both: in epoch 1, at `--fail-at` of the epoch, rank 1's
worker process is SIGKILLed (first attempt only); Ray Train restarts the group from the last
registered checkpoint.

- resume: the loop reads with `ftbridge.train.resumable`; the restart goes on from the
  checkpoint's position.
- restart: the loop reads `ray.train.get_dataset_shard("train")` (Ray Data's streaming split); the
  restart reads epoch 1 again from its start (the model is restored from the same checkpoints).

Per run, from the workers' own progress lines: rows read again (read after the checkpoint the
restart went on from, up to where the failure struck), time lost (from the failure until the
restarted group is back where it was: restart + rows read again), the time from the failure to
the first batch of the restarted group, and the catalog's time lost (`ftbridge audit`). Modes
alternate, a warm-up pair is not counted, medians over rounds; the ratio is resume / restart.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import alternating, bench_session, median, write_results

MODES = ("resume", "restart")
BATCH, EVERY, SLEEP_S, EPOCHS, FAIL_EPOCH = 2000, 50, 0.02, 2, 1


def loop(config: dict) -> None:
    """Both modes' training function (runs in the Train workers)."""
    import ray
    import ray.train
    from ray.train.collective import broadcast_from_rank_zero

    from ftbridge.chaos.training import progress_line
    from ftbridge.train import resumable

    out, mode = config["out"], config["mode"]
    rank = ray.train.get_context().get_world_rank()
    attempt = broadcast_from_rank_zero(uuid.uuid4().hex[:12])
    checkpoint = ray.train.get_checkpoint()
    if mode == "resume":
        data = resumable(config["source"], batch_size=BATCH)
        start = data.epoch
        base = sum(b - a for a, b in data.position()["consumed"])
    else:
        data, base, start = None, 0, 0
        if checkpoint is not None:
            with checkpoint.as_directory() as folder, open(os.path.join(folder, "state.json")) as f:
                state = json.load(f)
            start = state["epoch"] + (1 if state["complete"] else 0)
        shard = ray.train.get_dataset_shard("train")
    progress_line(out, kind="attempt", attempt=attempt, rank=rank, epoch=start, base=base)
    for epoch in range(start, EPOCHS):
        batches = data.iter_batches() if data is not None else shard.iter_batches(batch_size=BATCH,
                                                                                  batch_format="pyarrow")
        i = -1
        for i, batch in enumerate(batches):
            time.sleep(SLEEP_S)
            progress_line(out, kind="batch", attempt=attempt, rank=rank, epoch=epoch, rows=batch.num_rows)
            if (rank, epoch, i) == (1, FAIL_EPOCH, config["fail_batch"]) \
                    and not os.path.exists(os.path.join(out, "killed")):
                open(os.path.join(out, "killed"), "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            if (i + 1) % EVERY == 0:
                _report(data, rank, epoch, False, out)
        _report(data, rank, epoch, True, out)


def _report(data, rank: int, epoch: int, complete: bool, out: str) -> None:
    import ray.train

    with tempfile.TemporaryDirectory(dir=out) as folder:
        if rank == 0:
            with open(os.path.join(folder, "state.json"), "w") as f:
                json.dump({"epoch": epoch, "complete": complete}, f)
        if data is not None:
            data.report({"epoch": epoch}, folder if rank == 0 else None)
        else:
            ray.train.report({"epoch": epoch},
                             checkpoint=ray.train.Checkpoint.from_directory(folder) if rank == 0 else None)


def measure(out: str, epoch_rows: int) -> dict:
    """Rows read again and time lost, from the progress lines of the failed and the restarted attempt."""
    from ftbridge.chaos.training import read_progress

    progress = read_progress(out)
    starts = sorted((p for p in progress if p["kind"] == "attempt" and p["rank"] == 0), key=lambda p: p["t"])
    if len(starts) != 2:
        raise SystemExit(f"expected 2 attempts (one failure), found {len(starts)}")
    first, second = starts[0]["attempt"], starts[1]
    failed = [p for p in progress if p["kind"] == "batch" and p["attempt"] == first and p["epoch"] == FAIL_EPOCH]
    struck, t_fail = sum(p["rows"] for p in failed), max(p["t"] for p in failed)
    if second["epoch"] != FAIL_EPOCH:
        raise SystemExit(f"the restart began at epoch {second['epoch']}, not {FAIL_EPOCH}")
    done, t_back, t_first = second["base"], None, None
    for p in sorted((p for p in progress if p["kind"] == "batch" and p["attempt"] == second["attempt"]
                     and p["epoch"] == FAIL_EPOCH), key=lambda p: p["t"]):
        t_first = p["t"] if t_first is None else t_first
        done += p["rows"]
        if done >= struck:
            t_back = p["t"]
            break
    if t_back is None or t_first is None:
        raise SystemExit("the restarted attempt never got back to where the failure struck")
    return {"rows_read_again": struck - second["base"], "lost_s": t_back - t_fail, "restart_s": t_first - t_fail,
            "struck_at": struck / epoch_rows, "resumed_at": second["base"] / epoch_rows}


def run(mode: str, ds, source, catalog: str, tmp: str, rows: int, fail_at: float) -> dict:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    import ftbridge.train
    from ftbridge.lineage import queries
    from ftbridge.lineage.audit import run_record
    from ftbridge.lineage.catalog import Catalog

    out = tempfile.mkdtemp(dir=tmp, prefix=f"{mode}-")
    name = f"{mode}-{os.path.basename(out)}"
    recorder = ftbridge.train.RunRecorder(name, inputs={"train": ds}, catalog=catalog)
    per_rank_batches = -(-rows // 2 // BATCH)
    trainer = DataParallelTrainer(
        loop, datasets={"train": ds} if mode == "restart" else None,
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        train_loop_config={"out": out, "mode": mode, "source": source, "fail_batch": int(fail_at * per_rank_batches)},
        run_config=RunConfig(name=name, storage_path=os.path.join(tmp, "results"), callbacks=[recorder],
                             failure_config=FailureConfig(max_failures=2)))
    started = time.monotonic()
    recorder.fit(trainer)
    total = time.monotonic() - started
    figures = measure(out, rows)
    with Catalog(catalog).read() as con:
        summary, _ = run_record(con, queries.run(con, name))
    return {**figures, "total_s": total, "audit_lost_s": summary.time_lost_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--fail-at", type=float, default=0.75)
    parser.add_argument("--quick", action="store_true", help="1 round, 400,000 rows")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.rows = 1, 400_000
    import ftbridge
    import ftbridge.train

    tmp = tempfile.mkdtemp(prefix="ftbridge-bench-resume-")
    os.environ["FTBRIDGE_SPILL_DIR"] = os.path.join(tmp, "spill")
    catalog = os.path.join(tmp, "catalog.duckdb")
    results: dict = {m: [] for m in MODES}
    try:
        spark = bench_session()
        df = spark.range(0, args.rows, numPartitions=16).selectExpr("id", "sha1(cast(id as string)) as h")
        ds = ftbridge.from_spark_recoverable(df, catalog=catalog, name="resume-bench", materialize=False)
        source = ftbridge.train.ResumableSource.of(ds)
        # round 0 warms up (workers, imports) and is not counted
        for i, mode, counted in alternating(MODES, args.rounds, warmup=1):
            r = run(mode, ds, source, catalog, tmp, args.rows, args.fail_at)
            print(f"round {i}{'' if counted else ' (warm-up)'} {mode}: struck at {100 * r['struck_at']:.0f} %, "
                  f"went on from {100 * r['resumed_at']:.0f} %, {r['rows_read_again']:,} rows read again, "
                  f"{r['lost_s']:.1f} s lost ({r['restart_s']:.1f} s to the first batch; audit "
                  f"{r['audit_lost_s']:.1f} s), run {r['total_s']:.1f} s", flush=True)
            if counted:
                results[mode].append(r)
        ftbridge.release(ds)
        ftbridge.stop_spark()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    keys = ("rows_read_again", "lost_s", "restart_s", "audit_lost_s", "total_s")
    med = {m: {k: median([r[k] for r in results[m]]) for k in keys} for m in MODES}
    interval = EVERY * BATCH * 2
    print(f"\n{args.rows:,} rows per epoch, {EPOCHS} epochs, a checkpoint every {interval:,} rows, failure at "
          f"{100 * args.fail_at:.0f} % of epoch {FAIL_EPOCH}; medians over {args.rounds} rounds")
    print(f"{'mode':<10}{'rows read again':>17}{'lost s':>9}{'restart s':>11}{'audit lost s':>14}{'run s':>8}")
    for m in MODES:
        v = med[m]
        print(f"{m:<10}{v['rows_read_again']:>17,.0f}{v['lost_s']:>9.1f}{v['restart_s']:>11.1f}"
              f"{v['audit_lost_s']:>14.1f}{v['total_s']:>8.1f}")
    ratio = {k: med["resume"][k] / med["restart"][k] if med["restart"][k] else float("nan") for k in keys}
    print(f"{'ratio':<10}{ratio['rows_read_again']:>17.3f}{ratio['lost_s']:>9.2f}{ratio['restart_s']:>11.2f}"
          f"{ratio['audit_lost_s']:>14.2f}{ratio['total_s']:>8.2f}")
    print(f"rows read again per failure, resume: {med['resume']['rows_read_again']:,.0f} "
          f"(checkpoint interval {interval:,} rows); restart: {med['restart']['rows_read_again']:,.0f}")
    path = write_results("resume", f"./dev bench resume --rounds {args.rounds} --rows {args.rows} "
                                   f"--fail-at {args.fail_at}", rows=args.rows, rounds=args.rounds,
                         checkpoint_interval_rows=interval,
                         medians={f"{m} {k}": round(med[m][k], 3) for m in MODES for k in keys},
                         summary={f"resume/restart {k}": round(ratio[k], 3) for k in keys}, per_round=results)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
