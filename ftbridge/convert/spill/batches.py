"""The Spark side of a conversion: a DataFrame as an RDD of Arrow record-batch messages.

Spark's JVM turns rows into Arrow IPC record-batch messages (`Dataset.toArrowBatchRdd`, the
path `df.toArrow()` takes), so no Python worker decodes or re-encodes data: the spill
function only writes bytes. That RDD - not the DataFrame - is what gets persisted at the
caller's storage level, so a rebuild from the cached copy is a byte copy, and a rebuild from
Spark lineage produces the same bytes when the plan is deterministic.

A partition's bytes depend on three session settings (rows per batch, session time zone,
large var types). `BatchSettings` records them with the conversion, and a rebuild in another
session (a recipe) applies them, so rebuilt files can be checked against the originals.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass, replace

import pyarrow as pa
from pyspark import StorageLevel

from ftbridge.adapters import spark as spark_adapter
from ftbridge.cluster import jars
from ftbridge.common import foreign
from ftbridge.common.errors import ConfigurationError
from ftbridge.convert.spill.write import make_spill_fn
from ftbridge.convert.types import dataset_schema, schema_of_message

log = logging.getLogger(__name__)

SPILL_FORMAT = "arrow-ipc-stream/1"
_ROWS = "spark.sql.execution.arrow.maxRecordsPerBatch"
_TZ = "spark.sql.session.timeZone"
_LARGE = "spark.sql.execution.arrow.useLargeVarTypes"


@dataclass(frozen=True)
class BatchSettings:
    """The session settings that decide a partition's Arrow bytes."""

    batch_rows: int          # spark.sql.execution.arrow.maxRecordsPerBatch
    time_zone: str           # spark.sql.session.timeZone (timestamp columns carry it)
    large_var_types: bool    # spark.sql.execution.arrow.useLargeVarTypes (Spark 4)
    format: str = SPILL_FORMAT

    @staticmethod
    def of_session(spark) -> BatchSettings:
        rows = int(spark.conf.get(_ROWS, "10000"))
        if rows <= 0:  # Spark reads <= 0 as "unlimited"; one batch per partition is still a valid file
            rows = 0
        return BatchSettings(rows, spark.conf.get(_TZ), spark.conf.get(_LARGE, "false").lower() == "true")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str | None) -> BatchSettings | None:
        if not text:
            return None
        data = json.loads(text)
        if data.get("format") != SPILL_FORMAT:
            raise ConfigurationError(f"spill format {data.get('format')!r} is not known to this ftbridge "
                                     f"(it writes {SPILL_FORMAT!r}); upgrade ftbridge to rebuild it")
        return BatchSettings(int(data["batch_rows"]), data["time_zone"], bool(data["large_var_types"]))


@contextlib.contextmanager
def applied(spark, settings: BatchSettings | None):
    """Run the block with `settings` set on the session, then restore the previous values."""
    if settings is None:
        yield
        return
    wanted = {_ROWS: str(settings.batch_rows), _TZ: settings.time_zone,
              _LARGE: "true" if settings.large_var_types else "false"}
    before = {key: spark.conf.get(key, None) for key in wanted}
    try:
        for key, value in wanted.items():
            if before[key] != value:
                spark.conf.set(key, value)
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            elif value != wanted[key]:
                spark.conf.set(key, value)


def spill_metadata(element) -> dict:
    """A spill job's result element as a dict (the JVM writer returns JSON bytes)."""
    return json.loads(element) if isinstance(element, (bytes, bytearray)) else element


def _cached_level(storage_level: StorageLevel) -> StorageLevel:
    """The level the batches are persisted at: Arrow bytes are kept as they are in memory
    (deserialized: no second serialization of what is already bytes)."""
    level = storage_level
    if level.useMemory and not level.useOffHeap and not level.deserialized:
        level = StorageLevel(level.useDisk, level.useMemory, level.useOffHeap, True, level.replication)
    return level


class ArrowBatches:
    """A DataFrame's partitions as Arrow record-batch messages, persisted for rebuilds.

    Attributes:
        rdd: a PySpark RDD whose elements are `bytes` (one IPC record-batch message each).
        schema_message: the IPC schema message those batches follow.
        schema: the Dataset's Arrow schema (Spark's, normalised as `df.toArrow()` shows it).
        settings: the session settings the bytes were made with.
        num_partitions: the DataFrame's partition count.
    """

    def __init__(self, df, storage_level, settings: BatchSettings | None = None) -> None:
        spark = df.sparkSession
        sc = spark.sparkContext
        self.settings = settings or BatchSettings.of_session(spark)
        try:
            with applied(spark, settings):
                jrdd, large = spark_adapter.arrow_batch_rdd(df, self.settings.batch_rows, self.settings.time_zone,
                                                            self.settings.large_var_types)
            # What the batches really use (some releases ignore the conf): the schema must agree.
            self.settings = replace(self.settings, large_var_types=large)
            self.schema_message = spark_adapter.arrow_schema_message(df, self.settings.time_zone,
                                                                     self.settings.large_var_types)
            self.schema: pa.Schema = dataset_schema(schema_of_message(self.schema_message))
        except Exception as exc:  # Py4J / Spark analysis errors, or no JVM plan at all
            raise foreign.spark_plan_failed(exc) from exc
        self._persisted = spark_adapter.BatchRDD(jrdd, sc, _cached_level(storage_level))
        self.rdd = self._persisted.rdd
        self.num_partitions = self._persisted.num_partitions
        self.streamed_job = None  # the JVM SpillJob class for the last `spill_rdd`, when it has one

    def spill_rdd(self, target, conversion_id: str, only_partition: int | None = None):
        """An RDD with one metadata element per spilled partition (see `spill_metadata`).

        Local spill roots are written by the JVM writer (the bytes never enter Python), added to
        a session ftbridge did not start (see `jars.writer_class`); remote roots, or
        FTBRIDGE_SPILL_WRITER=python, by Python workers.
        """
        sc = self.rdd.context
        writer = jars.writer_class(sc, target)
        # The JVM writer's rows are JSON bytes, so its job can hand them over as tasks end.
        self.streamed_job = None if writer is None else spark_adapter.jvm_class(sc, jars.SPILL_JOB_CLASS)
        if writer is None:
            return self.rdd.mapPartitionsWithIndex(
                make_spill_fn(target, conversion_id, self.schema_message, only_partition))
        return self._persisted.map_partitions_in_jvm(writer, target.root, bool(target.node_local), conversion_id,
                                                     self.schema_message,
                                                     -1 if only_partition is None else int(only_partition))

    def unpersist(self) -> None:
        self._persisted.unpersist()
