"""Resumable iteration in a Ray Train loop: an epoch goes on where the last checkpoint left it.

On the driver, `ResumableSource.of(ds)` describes a recoverable Dataset by its pieces (a
streaming conversion's partitions, read from their checked spill files; a materialized one's
blocks in the object store) with stable global row ids. In the training loop,
`resumable(source)` (or `resumable("train")` under `fit_on_spark`) restores the position saved in
the checkpoint Ray Train restarts from, and `iter_batches()` yields this rank's batches of what
is left of the epoch (see `plan.py` for the split). `report(metrics, checkpoint_dir)` saves the
position into the checkpoint (`ftbridge-position.json`) and adds it to the metrics, so the run
recorder puts each checkpoint's position and each resume in the catalog.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import os
import time
from typing import Any

import pyarrow as pa
import ray
import ray.train

from ftbridge.adapters import ray as ray_adapter
from ftbridge.common import foreign
from ftbridge.common.config import settings
from ftbridge.common.errors import ConfigurationError, FtbridgeError
from ftbridge.convert import conversion
from ftbridge.convert.partition import PartitionRef, ReadContext
from ftbridge.convert.read.task import serve_one
from ftbridge.train.plan import EpochPlan, Ranges, Segment, count, merge, subtract

log = logging.getLogger(__name__)

POSITION_FILE = "ftbridge-position.json"   # rank 0's; rank r > 0 writes ftbridge-position.rank-<r>.json
METRICS_KEY = "_ftbridge"          # in the reported metrics: {dataset: position summary}
BATCH_FORMATS = ("pyarrow", "pandas", "numpy")
_SOURCES: dict[str, ResumableSource] = {}   # set by fit_on_spark's loop wrapper, in the Train worker


@dataclasses.dataclass(frozen=True)
class ResumableSource:
    """A recoverable Dataset as pieces with global row ids; small and picklable (train_loop_config)."""

    name: str
    conversion_id: str
    starts: tuple[int, ...]                      # each piece's first global row
    total_rows: int
    schema: pa.Schema
    partitions: tuple[PartitionRef, ...] = ()    # streaming: read from the spill files
    blocks: tuple = ()                           # materialized: the Dataset's block refs
    ctx: ReadContext | None = None
    seed: int | None = None
    read_timeout_s: float = 900.0

    @staticmethod
    def of(ds, name: str = "train", *, seed: int | None = None, catalog=None) -> ResumableSource:
        """The source of `ds` (from `from_spark_recoverable` / `open_recoverable`; a materialized
        Dataset may be any Ray Dataset). `seed`: shuffle the pieces per epoch (None: in order)."""
        blocks = ray_adapter.materialized_blocks(ds)
        timeout = settings().read_timeout_s
        origin = conversion.REGISTRY.origin(ds)
        cid = origin.conversion_id if origin is not None else ""
        if blocks is not None:
            starts, total = _starts([n for _, n in blocks])
            return ResumableSource(name, cid, starts, total, ds.schema().base_schema, blocks=tuple(r for r, _ in blocks),
                                   seed=seed, read_timeout_s=timeout)
        if origin is None:
            raise ConfigurationError(
                f"dataset {name!r}: a streaming Dataset can be resumed only when it comes from "
                "ftbridge.from_spark_recoverable or open_recoverable (or materialize it first).")
        _, refs, ctx = conversion.partition_reads(cid, catalog=catalog or origin.catalog)
        starts, total = _starts([r.num_rows for r in refs])
        return ResumableSource(name, cid, starts, total, ctx.schema, partitions=tuple(refs), ctx=ctx, seed=seed,
                               read_timeout_s=timeout)

    @property
    def num_pieces(self) -> int:
        return len(self.starts)

    def load(self, piece: int) -> pa.Table:
        """One piece's rows (a spill file checked and rebuilt if it must be, or a block)."""
        if self.partitions:
            assert self.ctx is not None
            return serve_one(self.partitions[piece], self.ctx)
        try:
            block = ray.get(self.blocks[piece], timeout=self.read_timeout_s)
        except Exception as exc:  # lost beyond Ray's reconstruction, or timed out: one typed error
            raise foreign.read_failed(exc, self.conversion_id or self.name) from exc
        return block if isinstance(block, pa.Table) else pa.Table.from_pandas(block, preserve_index=False)


def _starts(rows: list[int]) -> tuple[tuple[int, ...], int]:
    starts, total = [], 0
    for n in rows:
        starts.append(total)
        total += n
    return tuple(starts), total


def _format(table: pa.Table, batch_format: str):
    if batch_format == "pandas":
        return table.to_pandas()
    if batch_format == "numpy":
        return {name: table.column(name).to_numpy() for name in table.column_names}
    return table


class Resumable:
    """This rank's resumable iteration of one dataset (make it with `resumable(...)`)."""

    def __init__(self, source: ResumableSource, batch_size: int, batch_format: str, prefetch: int,
                 checkpoint) -> None:
        if batch_size < 1 or batch_format not in BATCH_FORMATS or prefetch < 0:
            raise ConfigurationError(f"resumable({source.name!r}): batch_size >= 1, batch_format one of "
                                     f"{BATCH_FORMATS}, prefetch >= 0 (got {batch_size}, {batch_format!r}, {prefetch})")
        self.source = source
        self.batch_size, self.batch_format, self.prefetch = batch_size, batch_format, prefetch
        self.rank, self.world_size, _ = ray_adapter.train_world()
        self.epoch = 0
        self._done: Ranges = []
        self._resumed: dict | None = None
        self._plan: EpochPlan | None = None
        self._k, self._finished = 0, False
        saved = _restore(checkpoint, source.name)
        if saved is not None:
            self._restore(saved)

    def _restore(self, saved: dict) -> None:
        src = self.source
        if saved.get("conversion_id") != src.conversion_id or saved.get("rows") != src.total_rows:
            log.warning("dataset %s: the checkpoint's position is for conversion %s (%s rows), not %s (%s rows); "
                        "epoch %s starts from its beginning", src.name, saved.get("conversion_id"), saved.get("rows"),
                        src.conversion_id, src.total_rows, saved.get("epoch"))
            saved = {**saved, "consumed": [], "complete": False}
        self.epoch = int(saved["epoch"]) + (1 if saved["complete"] else 0)
        self._done = [] if saved["complete"] else merge(saved["consumed"])
        self._resumed = {"epoch": self.epoch, "position": round(count(self._done) / max(1, src.total_rows), 4),
                         "at": time.time(), "from_world_size": saved.get("world_size")}
        log.info("dataset %s: rank %d resumes epoch %d at %.0f %% (saved by %s workers)", src.name, self.rank,
                 self.epoch, 100 * self._resumed["position"], saved.get("world_size"))

    def epochs(self, count_: int):
        """The epochs left of `count_` (from the restored one): `for epoch in data.epochs(n): ...`."""
        while self.epoch < count_:
            yield self.epoch
            self._next_epoch()

    def _next_epoch(self) -> None:
        self.epoch += 1
        self._done, self._plan, self._k, self._finished = [], None, 0, False

    def plan(self) -> EpochPlan:
        """The current epoch's split of the rows left over the world."""
        if self._plan is None:
            src = self.source
            left = subtract([(0, src.total_rows)], self._done)
            self._plan = EpochPlan.make(left, list(src.starts), src.total_rows, src.seed, self.epoch,
                                        self.world_size, self.batch_size)
        return self._plan

    def iter_batches(self):
        """This rank's batches of the rest of the current epoch (the same count on every rank).

        A batch counts as consumed once it is yielded: a report in the loop's body after it covers it.
        An epoch already iterated to its end moves on to the next first.
        """
        if self._finished:
            self._next_epoch()
        plan = self.plan()
        batches = [plan.batch(self.rank, i) for i in range(self._k, plan.num_batches)]
        with _Reader(self.source, batches, self.prefetch) as reader:
            for segs in batches:
                table = reader.rows(segs)
                self._k += 1
                yield _format(table, self.batch_format)
        self._finished = True

    def position(self) -> dict:
        """Where the epoch stands over all ranks (what a checkpoint saves)."""
        plan = self.plan()
        consumed = merge(self._done + plan.consumed(self._k))
        src = self.source
        return {"dataset": src.name, "conversion_id": src.conversion_id, "rows": src.total_rows,
                "epoch": self.epoch, "complete": self._finished or self._k >= plan.num_batches,
                "consumed": [list(r) for r in consumed], "world_size": self.world_size,
                "batch_size": self.batch_size, "seed": src.seed, "at": time.time()}

    def save(self, folder: str) -> None:
        """Write the position into a checkpoint folder (next to what else is in the file). Each rank
        writes its own file: Ray Train uploads every rank's folder into one checkpoint folder at
        once, and two ranks writing one file there leave it garbled."""
        path = os.path.join(folder, _position_file(self.rank))
        saved = _read_positions(path) if os.path.exists(path) else {}
        saved[self.source.name] = self.position()
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"datasets": saved}, f)
        os.replace(tmp, path)

    def metrics(self) -> dict:
        """{"_ftbridge": {dataset: summary}} to add to a report's metrics (the run recorder reads it);
        the first one after a resume says where it resumed."""
        pos = self.position()
        summary: dict[str, Any] = {"epoch": pos["epoch"], "complete": pos["complete"],
                                   "position": round(count(pos["consumed"]) / max(1, self.source.total_rows), 4)}
        if self._resumed is not None:
            summary["resumed"], self._resumed = self._resumed, None
        return {METRICS_KEY: {self.source.name: summary}}

    def report(self, metrics: dict, checkpoint_dir: str | None = None) -> None:
        """`ray.train.report` with the position saved into `checkpoint_dir` (if given: a folder
        holding this rank's checkpoint files) and added to the metrics."""
        checkpoint = None
        if checkpoint_dir is not None:
            self.save(checkpoint_dir)
            checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir)
        ray.train.report({**metrics, **self.metrics()}, checkpoint=checkpoint)


def _position_file(rank: int) -> str:
    return POSITION_FILE if rank == 0 else POSITION_FILE.replace(".json", f".rank-{rank}.json")


def _position_files(folder: str) -> list[str]:
    """The position files in a checkpoint folder, rank 0's first, then by rank."""
    def rank_of(name: str) -> int | None:
        if name == POSITION_FILE:
            return 0
        stem, prefix = name.removesuffix(".json"), POSITION_FILE.removesuffix(".json") + ".rank-"
        return int(stem[len(prefix):]) if name.endswith(".json") and stem.startswith(prefix) \
            and stem[len(prefix):].isdigit() else None
    ranked = [(r, n) for n in os.listdir(folder) if (r := rank_of(n)) is not None]
    return [os.path.join(folder, n) for _, n in sorted(ranked)]


def _read_positions(path: str) -> dict:
    try:
        with open(path) as f:
            return dict(json.load(f)["datasets"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"{path} is not a readable ftbridge position file ({exc}); the checkpoint "
                                 "cannot say where its epoch stood.") from exc


def _restore(checkpoint, name: str) -> dict | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        for path in _position_files(folder):   # every rank saved the same position: the first one that has it
            saved = _read_positions(path).get(name)
            if saved is not None:
                return saved
        return None


class _Reader:
    """Loads this rank's pieces in order, `prefetch` ahead in a thread; keeps only the ones in use."""

    def __init__(self, source: ResumableSource, batches: list[list[Segment]], prefetch: int) -> None:
        self.source = source
        order: list[int] = []
        for segs in batches:
            for s in segs:
                if not order or order[-1] != s.piece:
                    order.append(s.piece)
        self.order, self.next, self.prefetch = order, 0, prefetch
        self.where = {piece: i for i, piece in enumerate(order)}
        self.pending: dict[int, concurrent.futures.Future] = {}
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"ftbridge-resume-{source.name}")

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc) -> None:
        for fut in self.pending.values():
            fut.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _fill(self, upto: int) -> None:
        while self.next < min(len(self.order), upto + 1):
            piece = self.order[self.next]
            if piece not in self.pending:
                self.pending[piece] = self.pool.submit(self.source.load, piece)
            self.next += 1

    def rows(self, segs: list[Segment]) -> pa.Table:
        parts = []
        for s in segs:
            where = self.where[s.piece]
            self._fill(where + self.prefetch)
            for old in [p for p in self.pending if self.where[p] < where]:
                del self.pending[old]  # done with: let its rows go
            try:
                table = self.pending[s.piece].result(timeout=self.source.read_timeout_s)
            except concurrent.futures.TimeoutError as exc:
                raise foreign.read_timed_out(self.source.conversion_id or self.source.name,
                                             self.source.read_timeout_s) from exc
            except FtbridgeError:
                raise
            except Exception as exc:
                raise foreign.read_failed(exc, self.source.conversion_id or self.source.name) from exc
            parts.append(table.slice(s.a - self.source.starts[s.piece], s.rows))
        if not parts:
            return self.source.schema.empty_table()
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)


def resumable(source: ResumableSource | str = "train", *, batch_size: int = 1024, batch_format: str = "pyarrow",
              prefetch: int = 1, checkpoint: Any = "from_train") -> Resumable:
    """In a Ray Train loop: this rank's resumable iteration of `source`.

    Args:
        source: a `ResumableSource` (made on the driver, passed in train_loop_config), or under
            `fit_on_spark` the dataset's name ("train", "evaluation", ...).
        batch_size: rows per batch at most (every rank gets the same number of batches).
        batch_format: "pyarrow" (Tables), "pandas" or "numpy" (dicts of arrays).
        prefetch: pieces read ahead in a background thread.
        checkpoint: where to restore from; by default `ray.train.get_checkpoint()`.
    """
    if isinstance(source, str):
        if source not in _SOURCES:
            raise ConfigurationError(
                f"no resumable dataset {source!r} here (known: {sorted(_SOURCES) or 'none'}). Under fit_on_spark "
                "use the dataset's name; with a trainer built by hand, pass ftbridge.train.ResumableSource.of(ds) "
                "in train_loop_config.")
        source = _SOURCES[source]
    if checkpoint == "from_train":
        checkpoint = ray.train.get_checkpoint()
    return Resumable(source, batch_size, batch_format, prefetch, checkpoint)


@contextlib.contextmanager
def installed(sources: dict[str, ResumableSource]):
    """Make `sources` known by name to `resumable()` (fit_on_spark's loop wrapper)."""
    before = dict(_SOURCES)
    _SOURCES.update(sources)
    try:
        yield
    finally:
        _SOURCES.clear()
        _SOURCES.update(before)
