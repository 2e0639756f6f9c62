"""A real Ray Train loop that records what every worker saw, and the per-epoch "nothing lost" check.

`epoch_loop` runs in Ray Train workers (DataParallelTrainer, via `ftbridge.fit_on_spark`): it
resumes from its last checkpoint, streams its shard of "train" once per epoch, and, before it
reports the epoch (with a checkpoint from rank 0), writes every row it saw to
`<out>/<attempt>/e<epoch>-r<rank>.arrow`. An attempt is one start of the worker group (an id
rank 0 broadcasts). `check_epochs` then proves, for every epoch attempt all ranks completed,
that the ranks together saw each reference row exactly once, with the same content.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections import defaultdict

import pyarrow as pa
import pyarrow.ipc as ipc
import ray
import ray.train
from ray.train.collective import broadcast_from_rank_zero

from ftbridge.convert.ops.rowcheck import CheckResult, check

PROGRESS = "progress.jsonl"


def write_atomic(path: str, table: pa.Table) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with pa.OSFile(tmp, "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.replace(tmp, path)


def progress_line(out: str, **fields) -> None:
    """One line per event, so the chaos scenario can time its fault (appends are atomic at this size)."""
    with open(os.path.join(out, PROGRESS), "a") as f:
        f.write(json.dumps({"t": time.time(), **fields}) + "\n")


def read_progress(out: str) -> list[dict]:
    try:
        with open(os.path.join(out, PROGRESS)) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _start_epoch(checkpoint) -> int:
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder, open(os.path.join(folder, "state.json")) as f:
        return json.load(f)["epoch"] + 1


def epoch_loop(config: dict) -> None:
    """The training function: `config` has out, epochs, and optionally batch_size, batch_sleep_s,
    fail_once_at ({"epoch": e, "batch": b, "rank": r}: raise there in the first attempt only)."""
    out, rank = config["out"], ray.train.get_context().get_world_rank()
    attempt = broadcast_from_rank_zero(uuid.uuid4().hex[:12])
    os.makedirs(os.path.join(out, attempt), exist_ok=True)
    start = _start_epoch(ray.train.get_checkpoint())
    shard = ray.train.get_dataset_shard("train")
    fail = config.get("fail_once_at")
    progress_line(out, kind="attempt", attempt=attempt, rank=rank, start_epoch=start,
              node=ray.get_runtime_context().get_node_id())
    for epoch in range(start, config["epochs"]):
        tables = []
        for i, batch in enumerate(shard.iter_batches(batch_size=config.get("batch_size", 2048),
                                                     batch_format="pyarrow")):
            tables.append(batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch]))
            progress_line(out, kind="batch", attempt=attempt, rank=rank, epoch=epoch, batch=i)
            if fail and (epoch, i, rank) == (fail["epoch"], fail["batch"], fail["rank"]) \
                    and not os.path.exists(os.path.join(out, "failed-once")):
                open(os.path.join(out, "failed-once"), "w").close()
                raise RuntimeError(f"injected failure: epoch {epoch}, batch {i}, rank {rank}")
            time.sleep(config.get("batch_sleep_s", 0))
        seen = pa.concat_tables(tables) if tables else None
        if seen is not None:
            write_atomic(os.path.join(out, attempt, f"e{epoch}-r{rank}.arrow"), seen)
        # Under `out`, not the system temp dir: a worker killed mid-report leaves it where the run cleans up.
        with tempfile.TemporaryDirectory(dir=out) as folder:
            checkpoint = None
            if rank == 0:
                with open(os.path.join(folder, "state.json"), "w") as f:
                    json.dump({"epoch": epoch}, f)
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report({"epoch": epoch, "rows": 0 if seen is None else seen.num_rows}, checkpoint=checkpoint)
        progress_line(out, kind="epoch_done", attempt=attempt, rank=rank, epoch=epoch)


def read_table(path: str) -> pa.Table:
    with pa.memory_map(path) as source:
        return ipc.open_file(source).read_all()


def check_epochs(out: str, reference: pa.Table, world_size: int, epochs: int) -> tuple[list[CheckResult], dict]:
    """A row-by-row check of every epoch attempt all `world_size` ranks completed.

    Returns (checks, facts): facts has `epochs_checked` (sorted epochs with a complete attempt),
    `attempts` (worker-group starts) and `incomplete` (epoch attempts a failure cut short).
    Raises AssertionError when an epoch in range(epochs) has no complete attempt.
    """
    by_attempt: dict = defaultdict(lambda: defaultdict(dict))
    for attempt in sorted(os.listdir(out)):
        folder = os.path.join(out, attempt)
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name.endswith(".arrow"):
                epoch, rank = name[1:-6].split("-r")
                by_attempt[attempt][int(epoch)][int(rank)] = os.path.join(folder, name)
    checks, done, incomplete = [], set(), 0
    for epochs_seen in by_attempt.values():
        for epoch, ranks in sorted(epochs_seen.items()):
            if len(ranks) < world_size:
                incomplete += 1
                continue
            seen = pa.concat_tables([read_table(ranks[r]) for r in sorted(ranks)], promote_options="default")
            checks.append(check(reference, seen.select(reference.column_names)))
            done.add(epoch)
    missing = sorted(set(range(epochs)) - done)
    if missing:
        raise AssertionError(f"epochs {missing} have no attempt every rank completed (attempts: {len(by_attempt)})")
    return checks, {"epochs_checked": sorted(done), "attempts": len(by_attempt), "incomplete": incomplete}
