"""ftbridge's public API, in one place. Everything here forwards to the room that does the work."""

from __future__ import annotations

from ftbridge.cluster.session import ExecutorInfo, executors, init_spark, spark_session, stop_spark
from ftbridge.cluster.session import current_or_none
from ftbridge.convert import conversion
from ftbridge.convert.to_spark import conversion as ray_to_spark

__all__ = ["ExecutorInfo", "conversion_id", "executors", "from_spark", "from_spark_recoverable", "init_spark",
           "open_recoverable", "release", "spark_session", "stop_spark", "to_spark"]


def from_spark_recoverable(df, storage_level=None, *, spill_dir=None, catalog=None, name=None,
                           allow_nondeterministic: bool = False, recipe: str | None = None):
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

    Returns:
        A ray.data.Dataset; `ftbridge.conversion_id(ds)` gives its conversion id.
    """
    return conversion.create(df, storage_level, spill_dir=spill_dir, catalog=catalog, name=name,
                             allow_nondeterministic=allow_nondeterministic, recipe=recipe)


def from_spark(df, **kwargs):
    """Same engine as from_spark_recoverable (kept for RayDP-style call sites)."""
    return from_spark_recoverable(df, **kwargs)


def open_recoverable(conversion_id: str, *, catalog=None):
    """Rebuild the Dataset of a recorded conversion (e.g. in a new driver after a crash).

    Partitions whose spill files survive are read; missing ones are rebuilt by this
    process's Spark (if it made the conversion) or the conversion's recipe.
    """
    return conversion.reopen(conversion_id, catalog=catalog)


def to_spark(ds, spark, *, staging_dir=None, catalog=None, name=None):
    """A Ray Dataset as a Spark DataFrame whose rows (and partitions) follow the Dataset's block order.

    Each block is staged by a Ray task as an Arrow IPC file (checksummed, no Parquet, nothing
    through the driver) and read by Spark's executors; the conversion is recorded in the
    catalog. A staged file that is lost or corrupt is staged again from the block's Ray object
    when Spark reads it, and checked against the recorded checksum.

    Args:
        ds: a ray.data.Dataset (materialized or lazy).
        spark: the SparkSession to read into (executors must see `staging_dir`).
        staging_dir: None for node-local staging under FTBRIDGE_SPILL_DIR (on a multi-node
            cluster, blocks are then staged again on the node that reads them), or a shared
            path / pyarrow.fs-readable local mount every executor sees.
        catalog: catalog file (default: env FTBRIDGE_CATALOG, else ~/.ftbridge/catalog.duckdb).
        name: a name for the audit.

    Returns:
        A Spark DataFrame; `ftbridge.conversion_id(df)` gives its conversion id and
        `ftbridge.release(df)` frees its staged files and blocks.
    """
    return ray_to_spark.to_spark(ds, spark, conversion.REGISTRY, current_or_none(), staging_dir=staging_dir,
                                 catalog=catalog, name=name)


def conversion_id(ds) -> str:
    """The conversion id of a Dataset (from_spark_recoverable / open_recoverable) or DataFrame (to_spark)."""
    return conversion.conversion_id(ds)


def release(ds_or_id, *, catalog=None) -> int:
    """Free one conversion (a Dataset, DataFrame or id): delete its files, mark it released.
    Returns bytes freed."""
    return conversion.release(ds_or_id, catalog=catalog)
