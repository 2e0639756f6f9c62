"""A real Ray Train loop on `ftbridge.train.resumable`, and the exactly-once-per-epoch check over
the attempts that contributed to the final model.

`resumable_loop` runs in Ray Train workers: it reads its dataset with the resumable iterator,
reports every `report_every` batches and at each epoch's end with a checkpoint from rank 0 that
holds the iterator's position and `state.json` ({attempt, seq}: which attempt made it, at which of
its reports). Before each report every rank writes the rows it consumed since its previous report
to `<out>/<attempt>/e<epoch>-r<rank>-s<seq>.arrow`. An attempt that restarts from a checkpoint
records which one (`resumed_from` in its progress line).

`check_resumed` follows the chain back from the final attempt: the final attempt contributed all
its chunks; an attempt the next one resumed from contributed its chunks up to the report whose
checkpoint was used; the rest was rolled back with the model. For every epoch the contributing
chunks must hold every reference row exactly once with its content, and within the final attempt
no rank saw a row twice.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections import defaultdict

import pyarrow as pa
import ray
import ray.train
from ray.train.collective import broadcast_from_rank_zero

from ftbridge.chaos.training import progress_line, read_progress, read_table, write_atomic
from ftbridge.convert.ops.rowcheck import CheckResult, check
from ftbridge.train import resumable

STATE = "state.json"
FAIL_NOW = "fail-now"        # made by the driver: rank `fail_rank` raises at its next batch, once
FAILED = "failed-once"


def fail_now(out: str) -> None:
    """Have the loop's `fail_rank` raise at its next batch (first time only)."""
    open(os.path.join(out, FAIL_NOW), "w").close()


def _maybe_fail(out: str, rank: int, config: dict, epoch: int, batch: int) -> None:
    if rank == config.get("fail_rank", 1) and os.path.exists(os.path.join(out, FAIL_NOW)) \
            and not os.path.exists(os.path.join(out, FAILED)):
        open(os.path.join(out, FAILED), "w").close()
        raise RuntimeError(f"injected failure: epoch {epoch}, batch {batch}, rank {rank}")


def checkpoints_recorded(con, run_name: str, epoch: int) -> int:
    """Checkpoints inside `epoch` that Ray Train registered (its controller's recorder wrote them)."""
    row = con.execute("""SELECT count(*) FROM run_events e JOIN runs r USING (run_id)
                         WHERE r.name = ? AND e.kind = 'report' AND e.epoch = ? AND e.checkpoint IS NOT NULL
                           AND e.position > 0 AND e.position < 1""", [run_name, epoch]).fetchone()
    return int(row[0])


def _resumed_from(checkpoint) -> dict | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder, open(os.path.join(folder, STATE)) as f:
        return json.load(f)


def resumable_loop(config: dict) -> None:
    """The training function. `config`: out, epochs, report_every (batches), and optionally
    source (a ResumableSource; default: fit_on_spark's "train"), batch_size, batch_sleep_s,
    fail_rank (the rank that raises once `fail_now(out)` was called; default 1)."""
    out = config["out"]
    rank = ray.train.get_context().get_world_rank()
    attempt = broadcast_from_rank_zero(uuid.uuid4().hex[:12])
    os.makedirs(os.path.join(out, attempt), exist_ok=True)
    checkpoint = ray.train.get_checkpoint()
    data = resumable(config.get("source", "train"), batch_size=config.get("batch_size", 1000))
    progress_line(out, kind="attempt", attempt=attempt, rank=rank, epoch=data.epoch, pid=os.getpid(),
              node=ray.get_runtime_context().get_node_id(), resumed_from=_resumed_from(checkpoint),
              world_size=data.world_size)
    seq, every = 0, config["report_every"]
    for epoch in data.epochs(config["epochs"]):
        chunk: list[pa.Table] = []
        for i, batch in enumerate(data.iter_batches()):
            chunk.append(batch)
            progress_line(out, kind="batch", attempt=attempt, rank=rank, epoch=epoch, chunk=seq + 1, rows=batch.num_rows)
            _maybe_fail(out, rank, config, epoch, i)
            time.sleep(config.get("batch_sleep_s", 0))
            if (i + 1) % every == 0:
                seq += 1
                _report(out, attempt, rank, epoch, seq, chunk, data)
                chunk = []
        seq += 1
        _report(out, attempt, rank, epoch, seq, chunk, data)


def _report(out: str, attempt: str, rank: int, epoch: int, seq: int, chunk: list[pa.Table], data) -> None:
    if chunk:
        write_atomic(os.path.join(out, attempt, f"e{epoch}-r{rank}-s{seq}.arrow"), pa.concat_tables(chunk))
    position = data.position()
    # Under `out`, not the system temp dir: a worker killed mid-report leaves it where the run cleans up.
    with tempfile.TemporaryDirectory(dir=out) as folder:
        if rank == 0:
            with open(os.path.join(folder, STATE), "w") as f:
                json.dump({"attempt": attempt, "seq": seq}, f)
        data.report({"epoch": epoch, "seq": seq}, folder if rank == 0 else None)
    progress_line(out, kind="report", attempt=attempt, rank=rank, epoch=epoch, seq=seq, complete=position["complete"],
              consumed=sum(b - a for a, b in position["consumed"]))


def _chunks(out: str) -> dict:
    """{attempt: [(epoch, rank, seq, path)]}."""
    found: dict = defaultdict(list)
    for attempt in os.listdir(out):
        folder = os.path.join(out, attempt)
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.endswith(".arrow"):
                    e, rest = name[1:-6].split("-r")
                    r, s = rest.split("-s")
                    found[attempt].append((int(e), int(r), int(s), os.path.join(folder, name)))
    return found


def chain(progress: list[dict]) -> list[tuple[str, int | None]]:
    """[(attempt, last contributing seq or None for all)], from the final attempt back to the first."""
    starts = {p["attempt"]: p for p in progress if p["kind"] == "attempt" and p["rank"] == 0}
    if not starts:
        raise AssertionError("no attempt started")
    final = max(starts.values(), key=lambda p: p["t"])["attempt"]
    out: list[tuple[str, int | None]] = [(final, None)]
    while (came := starts[out[-1][0]].get("resumed_from")) is not None:
        if came["attempt"] not in starts or len(out) > len(starts):
            raise AssertionError(f"attempt {out[-1][0]} resumed from an unknown attempt {came}")
        out.append((came["attempt"], int(came["seq"])))
    return out


def check_resumed(out: str, reference: pa.Table, epochs: int) -> tuple[list[CheckResult], dict]:
    """A row-by-row check of every epoch over the contributing attempts (see the module doc).

    Returns (checks, facts): facts has `attempts`, `chain` (attempts that contributed), `mid_epoch_resumes`
    (attempts that went on from a checkpoint inside an epoch), `reconsumed` (rows consumed again:
    read by an attempt after its last contributing checkpoint).
    """
    progress = read_progress(out)
    links = chain(progress)
    chunks = _chunks(out)
    per_epoch: dict = defaultdict(list)
    final, _ = links[0]
    for attempt, upto in links:
        for epoch, _rank, seq, path in chunks.get(attempt, []):
            if upto is None or seq <= upto:
                per_epoch[epoch].append(path)
    checks = []
    for epoch in range(epochs):
        if not per_epoch.get(epoch):
            raise AssertionError(f"epoch {epoch}: no contributing rows")
        seen = pa.concat_tables([read_table(p) for p in sorted(per_epoch[epoch])], promote_options="default")
        checks.append(check(reference, seen.select(reference.column_names)))
    _final_attempt_once(chunks.get(final, []))
    contributing = dict(links)
    reconsumed = sum(p["rows"] for p in progress if p["kind"] == "batch" and p["attempt"] in contributing
                     and contributing[p["attempt"]] is not None and p["chunk"] > contributing[p["attempt"]])
    reconsumed += sum(p["rows"] for p in progress if p["kind"] == "batch" and p["attempt"] not in contributing)
    starts = [p for p in progress if p["kind"] == "attempt" and p["rank"] == 0]
    mid = sum(1 for p in starts if p.get("resumed_from") and _mid_epoch(progress, p["resumed_from"]))
    return checks, {"attempts": len(starts), "chain": len(links), "mid_epoch_resumes": mid, "reconsumed": reconsumed}


def _mid_epoch(progress: list[dict], came: dict) -> bool:
    """Whether the checkpoint `came` ({attempt, seq}) was made inside an epoch."""
    return any(p["kind"] == "report" and p["attempt"] == came["attempt"] and p["seq"] == came["seq"]
               and p["rank"] == 0 and not p["complete"] for p in progress)


def _final_attempt_once(chunks: list[tuple[int, int, int, str]]) -> None:
    by_rank_epoch: dict = defaultdict(list)
    for epoch, rank, _, path in chunks:
        by_rank_epoch[(epoch, rank)].append(path)
    for (epoch, rank), paths in by_rank_epoch.items():
        ids = pa.concat_tables([read_table(p) for p in paths], promote_options="default").column("id").to_pylist()
        if len(ids) != len(set(ids)):
            raise AssertionError(f"the final attempt's rank {rank} saw a row twice in epoch {epoch}")
