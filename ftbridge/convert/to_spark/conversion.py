"""`ftbridge.to_spark`: a Ray Dataset as a Spark DataFrame, in block order, recorded and recoverable."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import uuid

import pyarrow as pa
import ray

from ftbridge.adapters import ray as ray_adapter
from ftbridge.adapters import spark as spark_adapter
from ftbridge.common import foreign
from ftbridge.common.errors import UnsupportedTypeError
from ftbridge.convert.spill.target import SpillTarget, ray_nodes_by_address
from ftbridge.convert.to_spark.reader import make_reader
from ftbridge.convert.to_spark.stage import stage_all
from ftbridge.convert.types import schema_to_b64
from ftbridge.lineage.catalog import Catalog, now
from ftbridge.lineage.kinds import ConversionStatus, Direction, EventKind
from ftbridge.lineage.rows import ConversionRow, PartitionRow, new_event
from ftbridge.lineage.writer import start_writer

log = logging.getLogger(__name__)
STAGE_FORMAT = '{"format": "arrow-ipc-stream/1", "source": "ray-blocks"}'


def spark_schema(arrow_schema: pa.Schema):
    """The Spark schema a staged Arrow schema becomes; UnsupportedTypeError naming the column if none."""
    try:
        return spark_adapter.spark_schema_of_arrow(arrow_schema)
    except Exception as exc:  # PySpark's own TypeError for a type it cannot map
        column = next((f.name for f in arrow_schema if _unmappable(f)), "?")
        raise UnsupportedTypeError(
            f"column {column!r} of the Dataset has an Arrow type Spark cannot hold "
            f"({arrow_schema.field(column).type if column != '?' else arrow_schema}): {str(exc).splitlines()[0]}. "
            "Cast it (e.g. with map_batches) before to_spark.", column=column) from exc


def _unmappable(field: pa.Field) -> bool:
    try:
        spark_adapter.spark_schema_of_arrow(pa.schema([field]))
        return False
    except Exception:  # the one column PySpark refuses
        return True


def _unified(schemas: list[pa.Schema], fallback) -> pa.Schema:
    if not schemas:
        return getattr(fallback, "base_schema", fallback)
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowException, TypeError):
        return schemas[0]


def _record(ds, spark, conversion_id: str, name, target: SpillTarget, partitions: list[dict],
            schema: pa.Schema) -> ConversionRow:
    plan = str(ds)[:10_000]
    sc = spark.sparkContext
    return ConversionRow(
        conversion_id=conversion_id, name=name, created_at=now(), status=ConversionStatus.ACTIVE,
        plan_text=plan, plan_hash=hashlib.sha256(plan.encode()).hexdigest(), schema_b64=schema_to_b64(schema),
        storage_level="ray object store", spill_root=target.display_root, node_local=target.node_local,
        app_id=sc.applicationId, spark_version=sc.version, num_partitions=len(partitions),
        total_rows=sum(p["num_rows"] for p in partitions), total_bytes=sum(p["num_bytes"] for p in partitions),
        recipe=None, allow_nondeterministic=False, driver_host=socket.gethostname(),
        driver_pid=os.getpid(), spill_format=STAGE_FORMAT, direction=Direction.RAY_TO_SPARK)


def _executor_nodes(spark, spark_owner) -> list[str]:
    """The Ray nodes of the session's executors: its executor actors' when ftbridge started it;
    otherwise the Ray node alone at each executor's address (a Spark cluster that hosts Ray)."""
    if spark_owner is not None:
        return sorted({e.node_id for e in spark_owner.executors()})
    by_address = ray_nodes_by_address(ray.nodes())
    return sorted({by_address[h] for h in spark_adapter.executor_hosts(spark.sparkContext) if h in by_address})


def to_spark(ds, spark, registry, spark_owner, *, staging_dir=None, catalog=None, name=None):
    """`ftbridge.to_spark` (see `ftbridge.api` for the arguments)."""
    target = SpillTarget.resolve(staging_dir)
    target.check_writable()
    cat = Catalog(catalog)
    writer = start_writer(cat)
    conversion_id = uuid.uuid4().hex
    started = time.time()
    try:
        with ray_adapter.preserving_order(ds):
            refs = ds.to_arrow_refs()  # runs a lazy Dataset, in block order
    except Exception as exc:  # the user's transforms or Ray Data failed: one error naming the cause
        raise foreign.dataset_failed(exc, conversion_id) from None
    nodes = _executor_nodes(spark, spark_owner) if target.node_local else []
    partitions, schemas = stage_all(refs, target, conversion_id, nodes)
    arrow_schema = _unified(schemas, ds.schema())
    sschema = spark_schema(arrow_schema)
    large = spark.conf.get("spark.sql.execution.arrow.useLargeVarTypes", "false").lower() == "true"
    expected = spark_adapter.pyspark_arrow_schema(sschema, large_var_types=large)
    record = _record(ds, spark, conversion_id, name, target, partitions, expected)
    ev = new_event(conversion_id, None, EventKind.CREATED, started, source="driver",
                   detail=f"{len(partitions)} blocks staged, {record.total_rows} rows")
    writer.record_conversion(record, [PartitionRow.of(conversion_id, p) for p in partitions], [ev])
    restager = registry.add_staging(conversion_id, refs, target, partitions, cat, writer, spark_owner)
    if partitions:
        reader = make_reader(conversion_id, partitions, target, expected, ray.get_runtime_context().gcs_address,
                             restager)
        df = spark.range(0, len(partitions), 1, len(partitions)).mapInArrow(reader, sschema)
    else:
        df = spark.createDataFrame([], sschema)
    registry.remember(df, conversion_id, cat.path)
    log.info("to_spark %s: %d blocks, %d rows staged in %.2fs", conversion_id, len(partitions),
             record.total_rows, time.time() - started)
    return df
