"""Ray Dataset -> Spark DataFrame, without collecting through the driver.

Each block is written as a Parquet file by a Ray task (no CPU asked, for the same reason as
read tasks) into a staging folder Spark's executors can read; Spark then reads the folder.
On a multi-node cluster pass a shared `staging_dir` (or a pyarrow.fs URI Spark can read).
"""

from __future__ import annotations

import os
import tempfile
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from ftbridge_common.config import settings
from ftbridge_common.errors import ConversionTimeoutError


@ray.remote(num_cpus=0, max_retries=3)
def _write_block(block, path: str) -> int:
    table = block if isinstance(block, pa.Table) else pa.Table.from_pandas(block)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    pq.write_table(table, path)
    return table.num_rows


def to_spark(ds, spark, *, staging_dir: str | None = None):
    """Return a Spark DataFrame with the rows of `ds`.

    Args:
        ds: a ray.data.Dataset.
        spark: the SparkSession to read into.
        staging_dir: where blocks are staged as Parquet (default: a private temp folder).

    Returns:
        A Spark DataFrame backed by the staged files; the folder is kept until
        `ftbridge.stop_spark()` ends the process's use of it, or you delete it.
    """
    root = staging_dir or os.path.join(tempfile.gettempdir(), f"ftbridge-{os.getuid()}", "to_spark")
    out = os.path.join(root, uuid.uuid4().hex)
    os.makedirs(out, mode=0o700, exist_ok=True)
    refs = ds.to_arrow_refs()
    schema = ds.schema()
    writes = [_write_block.remote(ref, os.path.join(out, f"part-{i:05d}.parquet")) for i, ref in enumerate(refs)]
    timeout_s = settings().to_spark_timeout_s
    ready, pending = ray.wait(writes, num_returns=len(writes), timeout=timeout_s)
    if pending:
        raise ConversionTimeoutError(f"to_spark: {len(pending)} of {len(writes)} blocks were not staged within "
                                     f"{timeout_s:.0f}s under {out}. Check `ray status`, or raise "
                                     "FTBRIDGE_TO_SPARK_TIMEOUT_S.")
    ray.get(ready)
    if not writes:
        arrow = schema.base_schema if hasattr(schema, "base_schema") else schema
        pq.write_table(pa.Table.from_batches([], schema=arrow), os.path.join(out, "part-00000.parquet"))
    return spark.read.parquet(out)
