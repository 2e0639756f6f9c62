"""ftbridge's public API, in one place. Everything here forwards to the room that does the work."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ftbridge.cluster.session import ExecutorInfo, current_or_none, executors, init_spark, spark_session, stop_spark
from ftbridge.convert import conversion
from ftbridge.convert.ops import recover as recover_op
from ftbridge.convert.to_spark import conversion as ray_to_spark
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.reports import (
    AuditReport,
    ConversionDetail,
    ConversionSummary,
    GcReport,
    Health,
    RecoverReport,
    RunDetail,
    RunSummary,
    VerifyReport,
)
from ftbridge.operations import audit, gc, show, verify
from ftbridge.train import fit as train_fit
from ftbridge.train.fit import FitResult

if TYPE_CHECKING:
    from pyspark import StorageLevel
    from pyspark.sql import DataFrame, SparkSession
    from ray.data import Dataset

__all__ = ["AuditReport", "ConversionDetail", "ConversionSummary", "ExecutorInfo", "FitResult", "GcReport", "Health",
           "RecoverReport", "RunDetail", "RunSummary", "VerifyReport", "audit", "conversion_id", "executors",
           "fit_on_spark", "from_spark", "from_spark_recoverable", "gc", "init_spark", "open_recoverable", "recover",
           "release", "show", "spark_session", "stop_spark", "to_spark", "verify"]


def from_spark_recoverable(df: DataFrame, storage_level: StorageLevel | None = None, *, spill_dir: str | None = None,
                           catalog: str | None = None, name: str | None = None,
                           allow_nondeterministic: bool = False, recipe: str | None = None,
                           materialize: bool = True, reuse: bool = False) -> Dataset:
    """Convert a Spark DataFrame to a ray.data.Dataset that survives lost blocks, files and nodes.

    Args:
        df: the Spark DataFrame.
        storage_level: how Spark persists `df` for rebuilds (default MEMORY_AND_DISK).
        spill_dir: None for node-local spill (fast; lost with the node), or a shared path /
            pyarrow.fs URI (durable).
        catalog: catalog file (default: env FTBRIDGE_CATALOG, else ~/.ftbridge/catalog.duckdb).
        name: a name for the audit.
        allow_nondeterministic: accept rebuilt partitions whose content differs.
        recipe: "package.module:function" that rebuilds `df` in a fresh Spark session.
        materialize: True (default): every partition is read into Ray's object store before this
            returns; the blocks stay there while the Dataset lives (fast repeated passes, a lost
            block comes back through Ray's lineage). False: a lazy, streaming Dataset; every pass
            (epoch) streams the spill files again and the object store holds only the blocks in
            flight - for data larger than the object store and long training jobs.
        reuse: serve the files of the newest active conversion of the same deterministic plan
            over the same input files (names, sizes and modification times as recorded), with
            the same spill root and session settings, instead of running the spill job again
            (recorded as a `reused` event). Otherwise it converts as usual and logs why.
            Plans that are not deterministic, or read in-memory rows or RDDs, are never reused.

    Returns:
        A ray.data.Dataset; `ftbridge.conversion_id(ds)` gives its conversion id.
    """
    return conversion.create(df, storage_level, spill_dir=spill_dir, catalog=catalog, name=name,
                             allow_nondeterministic=allow_nondeterministic, recipe=recipe, materialize=materialize,
                             reuse=reuse)


def from_spark(df: DataFrame, **kwargs: Any) -> Dataset:
    """Same engine as from_spark_recoverable (kept for RayDP-style call sites)."""
    return from_spark_recoverable(df, **kwargs)


def open_recoverable(conversion_id: str, *, catalog: str | None = None, materialize: bool = True) -> Dataset:
    """Rebuild the Dataset of a recorded conversion (e.g. in a new driver after a crash).

    Partitions whose spill files survive are read; missing ones are rebuilt by this
    process's Spark (if it made the conversion) or the conversion's recipe. `materialize`
    as in `from_spark_recoverable` (False: a streaming Dataset).
    """
    return conversion.reopen(conversion_id, catalog=catalog, materialize=materialize)


def fit_on_spark(trainer_cls: type, train_df: DataFrame, evaluate_df: DataFrame | None = None, *,
                 datasets: dict[str, Any] | None = None, name: str | None = None, streaming: bool = True,
                 spill_dir: str | None = None, catalog: str | None = None, max_failures: int = 3,
                 storage_path: str | None = None, keep_data: bool = False, shuffle_seed: int | None = None,
                 **trainer_kwargs: Any) -> FitResult:
    """Train a Ray Train (v2) trainer on Spark DataFrames, recoverably, with the run in the catalog.

    Each DataFrame becomes a recoverable conversion and one of the trainer's datasets:
    `train_df` is "train", `evaluate_df` is "evaluation", `datasets` adds more by name (Spark
    DataFrames or ray.data.Datasets). Inside the training function, read them with
    `ftbridge.train.resumable(name)`: a restart goes on mid-epoch from the checkpoint's position,
    each row of an epoch consumed once (see the training guide); `ray.train.get_dataset_shard(name)`
    works too, and a restart then reads its epoch from the start.

    Args:
        trainer_cls: a Ray Train trainer class (XGBoostTrainer, TorchTrainer, DataParallelTrainer, ...).
        streaming: True (default): each epoch streams the spill files (bounded object-store use);
            False: the datasets are materialized in Ray's object store for the whole run.
        name: the run's name (default: the run_config's, else "ftbridge-<trainer>-<id>").
        max_failures: Ray Train restarts of the worker group (from the last checkpoint) before
            the run fails; used unless `run_config` sets its own FailureConfig.
        storage_path: where Ray Train keeps checkpoints (default ~/ray_results; on a multi-node
            cluster a path every node sees).
        keep_data: keep the conversions after a successful run (default: release them).
        shuffle_seed: `ftbridge.train.resumable` reads the partitions in a seeded order per epoch
            (None: in order).
        **trainer_kwargs: the trainer's own arguments (train_loop_per_worker, scaling_config,
            run_config, ...). The run recorder is added to run_config's callbacks.

    Returns:
        FitResult: `.result` (Ray Train's Result), `.checkpoint`, `.metrics`, `.run_id`
        (`ftbridge show RUN_ID` gives its timeline), `.conversions`.

    Raises:
        TrainingFailedError: the run failed after its restarts (recorded as failed).
    """
    return train_fit.fit_on_spark(trainer_cls, train_df, evaluate_df, datasets=datasets, name=name,
                                  streaming=streaming, spill_dir=spill_dir, catalog=catalog, max_failures=max_failures,
                                  storage_path=storage_path, keep_data=keep_data, shuffle_seed=shuffle_seed,
                                  **trainer_kwargs)


def to_spark(ds: Dataset, spark: SparkSession, *, staging_dir: str | None = None, catalog: str | None = None,
             name: str | None = None) -> DataFrame:
    """A Ray Dataset as a Spark DataFrame whose rows (and partitions) follow the Dataset's block order.

    Each block is staged by a Ray task as an Arrow IPC file (checksummed, no Parquet, nothing
    through the driver) and read by Spark's executors; the conversion is recorded in the
    catalog. A staged file that is lost or corrupt is staged again from the block's Ray object
    when Spark reads it, and checked against the recorded checksum.

    Args:
        ds: a ray.data.Dataset (materialized or lazy).
        spark: the SparkSession to read into (executors must see `staging_dir`).
        staging_dir: None for node-local staging under FTBRIDGE_SPILL_DIR (on a multi-node
            cluster each file is staged on a node with an executor, and a Spark task on another
            host fetches it from there through Ray), or a shared path / pyarrow.fs-readable
            local mount every executor sees.
        catalog: catalog file (default: env FTBRIDGE_CATALOG, else ~/.ftbridge/catalog.duckdb).
        name: a name for the audit.

    Returns:
        A Spark DataFrame; `ftbridge.conversion_id(df)` gives its conversion id and
        `ftbridge.release(df)` frees its staged files and blocks.
    """
    return ray_to_spark.to_spark(ds, spark, conversion.REGISTRY, current_or_none(), staging_dir=staging_dir,
                                 catalog=catalog, name=name)


def conversion_id(ds: Dataset | DataFrame) -> str:
    """The conversion id of a Dataset (from_spark_recoverable / open_recoverable) or DataFrame (to_spark)."""
    return conversion.conversion_id(ds)


def release(ds_or_id: Dataset | DataFrame | str, *, catalog: str | None = None) -> int:
    """Free one conversion (a Dataset, DataFrame or id): delete its files, mark it released.
    Returns bytes freed."""
    return conversion.release(ds_or_id, catalog=catalog)


def recover(conversion_id: str, *, catalog: str | None = None,
            on_progress: Callable[[int, int], None] | None = None) -> RecoverReport:
    """Verify a recorded conversion, then rebuild its missing or corrupt partitions through its recipe.

    Needs no live driver: the recipe runs in a Spark session this call starts (and stops) on
    the Ray cluster this process is connected to, or an embedded one.

    Args:
        conversion_id: a conversion id or unique prefix of one.
        on_progress: called as `on_progress(done, total)` once the bad partitions are known and
            after each rebuild.

    Returns:
        RecoverReport: `.verified` (what verify found), `.rebuilt`, `.failed`, `.health`
        (HEALTHY unless a partition could not be rebuilt).

    Raises:
        PartitionLostError: partitions are bad and the conversion has no recipe.
    """
    return recover_op.recover(Catalog(catalog), conversion_id, on_progress=on_progress)
