"""A recoverable Spark -> Ray conversion from start to end: create, reopen, identify, release.

The data flows one way: the DataFrame's Arrow batches (`spill/batches.py`) are written by one
Spark job (`spill/job.py`), recorded in the catalog, and read by the Datasource's tasks
(`read/`); a read that finds a file missing or bad asks the rebuild service (`rebuild/`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid

import ray
from pyspark import StorageLevel

from ftbridge.adapters import ray as ray_adapter
from ftbridge.adapters import spark as spark_adapter
from ftbridge.cluster import session as cluster
from ftbridge.common.config import settings
from ftbridge.common.errors import ConfigurationError, ConversionError, ConversionReleasedError, ConversionTimeoutError
from ftbridge.convert import warm
from ftbridge.convert.partition import PartitionRef, ReadContext
from ftbridge.convert.read.dataset import open_dataset, reads_during_spill
from ftbridge.convert.read.task import prewarm_readers
from ftbridge.convert.rebuild.recipe import RecipeRebuilder, check_recipe
from ftbridge.convert.rebuild.spark import SparkRebuilder
from ftbridge.convert.registry import Registry
from ftbridge.convert.reuse import find, reuse_key
from ftbridge.convert.spill import cleanup
from ftbridge.convert.spill.batches import ArrowBatches
from ftbridge.convert.spill.job import spill_all
from ftbridge.convert.spill.target import SpillTarget
from ftbridge.convert.types import check_supported, dataframe_schema, schema_from_b64, schema_to_b64
from ftbridge.lineage import queries
from ftbridge.lineage.catalog import Catalog, now
from ftbridge.lineage.kinds import ConversionStatus, Direction, EventKind, PartitionState
from ftbridge.lineage.rows import ConversionRow, PartitionRow, new_event
from ftbridge.lineage.writer import CatalogClient, Pending, client_for, start_writer

log = logging.getLogger(__name__)


def _release_on_stop(conversion_id: str, catalog: str) -> None:
    release(conversion_id, catalog=catalog)


REGISTRY = Registry(release=_release_on_stop)
warm.install(REGISTRY)


class _Recorded:
    """A conversion's record, sent once its spill job has ended (`sent`): what a rebuild asked for
    by a read during the job waits for (bounded by the job's and the catalog's own bounds)."""

    def __init__(self, conversion_id: str) -> None:
        self.conversion_id = conversion_id
        self._ready = threading.Event()
        self._pending: Pending | None = None
        self._error: BaseException | None = None

    def sent(self, pending: Pending) -> None:
        self._pending = pending
        self._ready.set()

    def failed(self, error: BaseException) -> None:
        self._error = error
        self._ready.set()

    def wait(self) -> None:
        cfg = settings()
        bound_s = cfg.spark_job_timeout_s + cfg.catalog_call_timeout_s
        if not self._ready.wait(bound_s):
            raise ConversionTimeoutError(f"conversion {self.conversion_id} was not recorded within {bound_s:.0f}s of "
                                         "a rebuild's request; see the driver's log for its spill job",
                                         conversion_id=self.conversion_id)
        if self._pending is None:
            raise ConversionError(f"conversion {self.conversion_id} failed before it was recorded "
                                  f"({type(self._error).__name__}: {self._error}); nothing to rebuild",
                                  conversion_id=self.conversion_id)
        self._pending.wait()


def _plan_text(df) -> str:
    try:
        return spark_adapter.plan_text(df)
    except Exception:  # plan text is for the audit; never block a conversion on it
        return ""


def _record(df, conversion_id: str, name, batches: ArrowBatches, target: SpillTarget, partitions: list[dict],
            recipe, allow_nondeterministic: bool, storage_level) -> ConversionRow:
    """The conversions-table row of a spilled conversion."""
    plan = _plan_text(df)
    sc = df.sparkSession.sparkContext
    return ConversionRow(
        conversion_id=conversion_id, name=name, created_at=now(), status=ConversionStatus.ACTIVE,
        plan_text=plan, plan_hash=hashlib.sha256(plan.encode()).hexdigest(),
        schema_b64=schema_to_b64(batches.schema), storage_level=str(storage_level), spill_root=target.display_root,
        node_local=target.node_local, app_id=sc.applicationId, spark_version=sc.version,
        num_partitions=batches.num_partitions, total_rows=sum(p["num_rows"] for p in partitions),
        total_bytes=sum(p["num_bytes"] for p in partitions), recipe=recipe,
        allow_nondeterministic=allow_nondeterministic, driver_host=socket.gethostname(),
        driver_pid=os.getpid(), spill_format=batches.settings.to_json())


def create(df, storage_level=None, *, spill_dir=None, catalog=None, name=None,
           allow_nondeterministic: bool = False, recipe: str | None = None, materialize: bool = True,
           reuse: bool = False):
    """`ftbridge.from_spark_recoverable` (see `ftbridge.api` for the arguments)."""
    entered = time.time()
    storage_level = storage_level or StorageLevel.MEMORY_AND_DISK
    check_supported(dataframe_schema(df))               # unsupported types fail before any work
    target = SpillTarget.resolve(spill_dir)
    target.check_writable()                             # so does an unwritable spill dir
    if recipe is not None:
        check_recipe(recipe)
    cat = Catalog(catalog)
    writer = start_writer(cat)                          # and a bad catalog
    conversion_id = uuid.uuid4().hex
    started = time.time()
    ray_adapter.trim_ray_data_caches()                  # what earlier Dataset runs left in this process
    warm = prewarm_readers()
    batches = ArrowBatches(df, storage_level)
    key = None
    if reuse:
        key, why = reuse_key(df)
        found = None
        if key is not None:
            found, why = find(cat, key, target, batches.settings.to_json(), batches.num_partitions)
        if found is not None:
            del warm
            return _reused(*found, batches, target, cat, writer, started, materialize)
        log.info("converting again, not reusing a recorded conversion: %s", why)
    # The rebuilder serves the reads that run during the spill job; a rebuild waits for the record.
    t_reg = time.time()
    recorded = _Recorded(conversion_id)
    rebuilder = SparkRebuilder(conversion_id, batches, target, cat, writer, [], allow_nondeterministic,
                               cluster.current_or_none(), recorded=recorded)
    service = REGISTRY.add(rebuilder)
    t_rebuilder = time.time()
    reads = reads_during_spill(conversion_id, batches.num_partitions, target, batches.schema, writer, service,
                               materialize)
    seen = [0]

    def written(parts: list[dict]) -> None:
        assert reads is not None
        reads.written(parts)
        if not log.isEnabledFor(logging.DEBUG):
            return
        done = reads.read_so_far()
        if done > seen[0]:
            seen[0] = done
            log.debug("conversion %s: %d partition(s) read while its spill job runs", conversion_id, done)

    try:
        partitions, retried = spill_all(batches, target, conversion_id,
                                        on_written=None if reads is None else written)
        spilled = time.time()
        read_early = reads.read_so_far() if reads is not None else 0
        del warm  # fire and forget: they only start worker processes
        rebuilder.know(partitions)
        record = _record(df, conversion_id, name, batches, target, partitions, recipe, allow_nondeterministic,
                         storage_level)
        record.reuse_key = key
        ev = new_event(conversion_id, None, EventKind.CREATED, started, source="driver",
                       detail=f"{batches.num_partitions} partitions, {record.total_rows} rows")
        t_call = time.time()
        # The last reads run while the writer journals the record; the Dataset is returned only once
        # it is journaled, and a rebuild waits for it before it records anything (see SparkRebuilder).
        pending = writer.record_conversion_soon(record, [PartitionRow.of(conversion_id, p) for p in partitions],
                                                [*retried, ev])
    except BaseException as exc:  # nothing recorded: its reads and rebuilds end with it
        if reads is not None:
            reads.cancel()
        REGISTRY.forget(conversion_id)
        recorded.failed(exc)
        raise
    recorded.sent(pending)
    try:
        if reads is not None:
            ds = reads.dataset()
        else:
            ds = open_dataset(conversion_id, partitions, target, batches.schema, writer, service, materialize)
    finally:
        read = time.time()
        pending.wait()  # a failed read raises after the record is in: the catalog says which partition was lost
        # The record and the read events are journaled (durable); they are committed while the
        # caller goes on, and a read of the catalog in this process waits for that.
        writer.flush_soon()
    done = time.time()
    REGISTRY.remember(ds, conversion_id, cat.path)
    log.info("conversion %s: %d partitions, %d rows, %d bytes; setup %.3fs, rebuilder %.3fs, spill %.3fs (%d "
             "partitions read during it), plan %.3fs, read %.3fs (the record sent first), then record %.3fs",
             conversion_id, batches.num_partitions, record.total_rows, record.total_bytes, started - entered,
             t_rebuilder - t_reg, (t_reg - started) + (spilled - t_rebuilder), read_early, t_call - spilled,
             read - t_call, done - read)
    return ds


def _reused(conv: dict, parts: list[dict], batches: ArrowBatches, target: SpillTarget, cat: Catalog,
            writer: CatalogClient, started: float, materialize: bool):
    """The Dataset of a recorded conversion of the same plan over the same files: no Spark job.
    This session's Spark rebuilds its lost partitions (the plan is the same and deterministic),
    and its `stop_spark()` releases it as one of its own conversions."""
    cid = conv["conversion_id"]
    files = len(json.loads(conv["reuse_key"])["files"])
    writer.record_events([new_event(cid, None, EventKind.REUSED, started, source="driver",
                                    detail=f"same plan over {files} unchanged input files; {len(parts)} partitions "
                                           f"served again")])
    service = REGISTRY.add(SparkRebuilder(cid, batches, target, cat, writer, parts, False,
                                          cluster.current_or_none()))
    ds = open_dataset(cid, parts, target, batches.schema, writer, service, materialize)
    REGISTRY.remember(ds, cid, cat.path)
    log.info("conversion %s reused (same plan, %d unchanged input files): %d partitions, %d rows in %.2fs", cid,
             files, len(parts), conv["total_rows"], time.time() - started)
    return ds


def reopen(conversion_id: str, *, catalog=None, materialize: bool = True):
    """`ftbridge.open_recoverable` (see `ftbridge.api`)."""
    cat = Catalog(catalog)
    conv, parts = cat.load(conversion_id)
    conversion_id = conv["conversion_id"]
    if conv.get("direction") == Direction.RAY_TO_SPARK:
        raise ConfigurationError(f"conversion {conversion_id} is a Ray -> Spark conversion (to_spark): its data "
                                 "is a Spark DataFrame, not a Dataset to reopen.", conversion_id=conversion_id)
    if conv["status"] == ConversionStatus.RELEASED:
        raise ConversionReleasedError(
            f"conversion {conversion_id} was released at {conv['released_at']}; its spill files are gone. "
            "Convert the DataFrame again.", conversion_id=conversion_id)
    cluster.ensure_ray()
    writer = start_writer(cat)
    target = SpillTarget.recorded(conv)
    ds = open_dataset(conversion_id, parts, target, schema_from_b64(conv["schema_b64"]), writer,
                      _rebuild_service(conv, parts, cat, writer), materialize)
    REGISTRY.remember(ds, conversion_id, cat.path)
    return ds


def _rebuild_service(conv: dict, parts: list[dict], cat: Catalog, writer: CatalogClient) -> str | None:
    """The rebuild service for a recorded conversion: this session's Spark, else its recipe, else none."""
    if conv["conversion_id"] in REGISTRY.rebuilders:
        return REGISTRY.service_name()
    if conv.get("recipe"):
        return REGISTRY.serve(conv["conversion_id"], RecipeRebuilder(conv, parts, cat, writer).rebuild)
    return None


def partition_reads(ds_or_id, *, catalog=None) -> tuple[dict, list[PartitionRef], ReadContext]:
    """(conversion row, its partitions as read refs in order, a streaming read context): what reads a
    conversion's spill files outside its Dataset (the resumable training iterator)."""
    if isinstance(ds_or_id, str):
        cid = ds_or_id
    else:
        cid = conversion_id(ds_or_id)
        origin = REGISTRY.origin(ds_or_id)
        catalog = catalog or (origin.catalog if origin is not None else None)
    cat = Catalog(catalog)
    conv, parts = cat.load(cid)
    if conv["status"] == ConversionStatus.RELEASED:
        raise ConversionReleasedError(f"conversion {conv['conversion_id']} was released; its spill files are gone.",
                                      conversion_id=conv["conversion_id"])
    writer = start_writer(cat)
    target = SpillTarget.recorded(conv)
    refs = [PartitionRef.of(conv["conversion_id"], p, target) for p in parts]
    ctx = ReadContext("", writer.in_background(), _rebuild_service(conv, parts, cat, writer),
                      schema_from_b64(conv["schema_b64"]), None)
    return conv, refs, ctx


def conversion_id(ds) -> str:
    """`ftbridge.conversion_id` (see `ftbridge.api`)."""
    origin = REGISTRY.origin(ds)
    if origin is None:
        raise ConfigurationError("this object did not come from ftbridge.from_spark_recoverable, open_recoverable "
                                 "or to_spark (datasets and DataFrames derived by transforms have no conversion id)")
    return origin.conversion_id


def release(ds_or_id, *, catalog=None) -> int:
    """`ftbridge.release` (see `ftbridge.api`)."""
    if isinstance(ds_or_id, str):
        conv_id = ds_or_id
    else:
        conv_id = conversion_id(ds_or_id)
        origin = REGISTRY.origin(ds_or_id)
        catalog = catalog or (origin.catalog if origin is not None else None)
    ray_adapter.trim_ray_data_caches()
    rebuilder = REGISTRY.forget(conv_id)
    staging = REGISTRY.forget_staging(conv_id)
    live = rebuilder or staging
    cat = live.catalog if live else Catalog(catalog)
    with cat.read() as con:  # one connection: each open of the file costs more than the queries
        conv = queries.conversion(con, conv_id)
        parts = queries.partitions(con, conv["conversion_id"])
        leftovers = queries.leftovers(con, conv["conversion_id"])
    # Each host deletes its own node-local files (and any of the conversion no row names); a host
    # that is down keeps them until `gc`.
    freed = cleanup.free(conv, [p for p in parts if p["state"] != PartitionState.RELEASED] + leftovers, whole=True)
    if rebuilder is not None:
        rebuilder.batches.unpersist()
    cid = conv["conversion_id"]
    ev = new_event(cid, None, EventKind.RELEASED, source="driver", detail=freed.describe())
    if freed.waiting:
        log.warning("conversion %s released; %s", cid, freed.describe())
    (live.writer if live and ray.is_initialized() else client_for(cat)).release(cid, freed.gone, freed.waiting, [ev])
    return freed.total
