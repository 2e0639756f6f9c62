"""ftbridge's public API, in one place. Everything here forwards to the room that does the work."""

from __future__ import annotations

from ftbridge.cluster.session import ExecutorInfo, executors, init_spark, spark_session, stop_spark
from ftbridge.convert import conversion
from ftbridge.convert.to_spark import to_spark

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


def conversion_id(ds) -> str:
    """The conversion id of a Dataset returned by from_spark_recoverable / open_recoverable."""
    return conversion.conversion_id(ds)


def release(ds_or_id, *, catalog=None) -> int:
    """Free one conversion: delete its spill files, mark it released. Returns bytes freed."""
    return conversion.release(ds_or_id, catalog=catalog)
