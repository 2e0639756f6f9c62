"""The recoverable Spark -> Ray conversion: spill, record, read, rebuild, release."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
import time
import uuid

import pyarrow as pa
import ray
import ray.data

from ftbridge.cluster import session as cluster
from ftbridge.cluster.jobs import run_bounded
from ftbridge.adapters import ray as ray_adapter
from ftbridge.adapters import spark as spark_adapter
from ftbridge.convert.datasource import SpillDatasource
from ftbridge.convert.read import READ_MAX_RETRIES, READ_TASKS_PER_NODE, PartitionRef, ReadContext, event, prewarm_readers
from ftbridge.convert.rebuild import RebuildDispatcher
from ftbridge.convert.source import ArrowBatches, spill_metadata
from ftbridge.convert.spill import SpillTarget
from ftbridge.convert.types import check_supported, dataframe_schema, schema_from_b64, schema_to_b64
from ftbridge.errors import (
    ConfigurationError,
    ConversionError,
    ConversionReleasedError,
    FtbridgeError,
    NonDeterministicRebuildError,
)
from lineage import queries
from lineage.catalog import Catalog, new_event, now
from lineage.writer import call, get_writer

log = logging.getLogger(__name__)

READ_TIMEOUT_S = float(os.environ.get("FTBRIDGE_READ_TIMEOUT_S", 900))
SPARK_JOB_TIMEOUT_S = float(os.environ.get("FTBRIDGE_SPARK_JOB_TIMEOUT_S", 1800))
REBUILD_JOB_TIMEOUT_S = float(os.environ.get("FTBRIDGE_REBUILD_JOB_TIMEOUT_S", 300))


class _Live:
    """A conversion this process made and can still rebuild through Spark."""

    def __init__(self, conversion_id, batches: ArrowBatches, target, catalog, writer, partitions,
                 allow_nondeterministic, spark_owner, rebuilt_kind: str = "rebuilt_from_spark"):
        self.rebuilt_kind = rebuilt_kind
        self.conversion_id, self.batches = conversion_id, batches
        self.target, self.catalog, self.writer = target, catalog, writer
        self.original = {p["partition_id"]: dict(p) for p in partitions}
        self.allow_nondeterministic = allow_nondeterministic
        self.spark_owner = spark_owner
        self.lock = threading.Lock()

    def rebuild(self, partition_id: int, why: str) -> dict:
        """Run exactly this partition through Spark again (cached block first, lineage second)."""
        started = time.time()
        with self.lock:
            rdd = self.batches.spill_rdd(self.target, self.conversion_id, only_partition=partition_id)
            rows = run_bounded(
                rdd.context, REBUILD_JOB_TIMEOUT_S, f"rebuild of partition {partition_id} of {self.conversion_id}",
                lambda: rdd.context.runJob(rdd, list, partitions=[partition_id]),
                conversion_id=self.conversion_id, partition=partition_id)
        if len(rows) != 1:
            raise ConversionError(f"rebuild of partition {partition_id} returned {len(rows)} results",
                                  conversion_id=self.conversion_id, partition=partition_id)
        meta = spill_metadata(rows[0])
        orig = self.original[partition_id]
        ref = _ref_from(self.conversion_id, meta, self.target)
        if meta["checksum"] != orig["checksum"] and not self.allow_nondeterministic:
            detail = (f"rebuilt checksum {meta['checksum']} ({meta['num_rows']} rows) != original "
                      f"{orig['checksum']} ({orig['num_rows']} rows)")
            call(self.writer, "update_partition", self.conversion_id, partition_id, {"state": "lost"},
                 [event(ref, "rebuild_refused", started, detail, source="spark")])
            raise NonDeterministicRebuildError(
                f"partition {partition_id} of conversion {self.conversion_id} came out different when Spark "
                f"rebuilt it ({detail}): the plan is not deterministic. Make it deterministic (sort, seed "
                "random columns) or pass allow_nondeterministic=True.",
                conversion_id=self.conversion_id, partition=partition_id, node_id=meta.get("node_id"))
        fields = {"path": meta["path"], "node_id": meta["node_id"], "num_bytes": meta["num_bytes"],
                  "checksum": meta["checksum"], "num_rows": meta["num_rows"], "state": "healthy",
                  "rebuilt_count": orig.get("rebuilt_count", 0) + 1}
        orig["rebuilt_count"] = fields["rebuilt_count"]
        if self.allow_nondeterministic:
            orig.update(checksum=meta["checksum"], num_bytes=meta["num_bytes"], num_rows=meta["num_rows"])
        call(self.writer, "update_partition", self.conversion_id, partition_id, fields,
             [event(ref, self.rebuilt_kind, started, f"{why} -> {meta['path']}", source="spark")])
        return meta


class ConversionManager:
    """Conversions made by this process, their rebuild service, and cleanup at stop_spark."""

    def __init__(self) -> None:
        self.live: dict[str, _Live] = {}
        self.dispatcher: RebuildDispatcher | None = None
        self.lock = threading.Lock()

    def service_name(self) -> str:
        with self.lock:
            if self.dispatcher is None:
                self.dispatcher = RebuildDispatcher()
            return self.dispatcher.name

    def add(self, live: _Live) -> None:
        self.service_name()
        self.live[live.conversion_id] = live
        self.dispatcher.register(live.conversion_id, live.rebuild)
        self._hook(live.spark_owner)

    def add_handler(self, conversion_id: str, handler) -> str:
        """Serve rebuilds of a conversion this process did not make (e.g. by its recipe)."""
        name = self.service_name()
        self.dispatcher.register(conversion_id, handler)
        return name

    def _hook(self, owner) -> None:
        if owner is not None and self._on_stop not in owner.stop_hooks:
            owner.stop_hooks.append(self._on_stop)

    def forget(self, conversion_id: str) -> _Live | None:
        live = self.live.pop(conversion_id, None)
        if self.dispatcher is not None:
            self.dispatcher.unregister(conversion_id)
        return live

    def _on_stop(self, cleanup_data: bool) -> None:
        for conv_id, live in list(self.live.items()):
            if cleanup_data:
                release(conv_id, catalog=live.catalog.path)
            else:
                self.forget(conv_id)
        with self.lock:
            if self.dispatcher is not None:
                self.dispatcher.stop()
                self.dispatcher = None


_MANAGER = ConversionManager()
LAST_TIMINGS: dict[str, float] = {}  # phases of the last conversion in this process (benchmarks read it)


def _ref_from(conversion_id: str, part: dict, target: SpillTarget) -> PartitionRef:
    return PartitionRef(conversion_id, int(part["partition_id"]), part["path"], part.get("node_id"),
                        int(part["num_rows"]), int(part["num_bytes"]), part["checksum"], target)


def _plan_text(df) -> str:
    try:
        return spark_adapter.plan_text(df)
    except Exception:  # plan text is for the audit; never block a conversion on it
        return ""


def _open_dataset(conversion_id, partitions, target, schema, writer, service_name, materialize: bool = True):
    """The Dataset over a conversion's spill files, read (materialize=True) before it returns."""
    refs = [_ref_from(conversion_id, p, target) for p in partitions]
    ctx = ReadContext(uuid.uuid4().hex, writer, service_name, schema)
    if not refs:  # no partitions at all: an empty Dataset that still knows its schema
        ds = ray.data.from_arrow(pa.Table.from_batches([], schema=schema))
    else:
        alive = sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0)
        source = SpillDatasource(refs, ctx, num_tasks=READ_TASKS_PER_NODE * max(1, alive))
        n_tasks = len(source.groups())
        with ray_adapter.data_context(preserve_order=True):
            # No CPU (see datasource.py); retries re-run a read whose worker or node died.
            ds = ray_adapter.read_datasource(source, n_tasks, READ_MAX_RETRIES)
        if materialize:
            ds = _materialize(ds, conversion_id)
            call(writer, "flush")  # the read events of this build are durable when we return
    ds._ftbridge_conversion_id = conversion_id
    ds._ftbridge_catalog = writer_path(writer)
    return ds


def _materialize(ds, conversion_id: str):
    """`ds.materialize()`, bounded by READ_TIMEOUT_S, with ftbridge errors instead of Ray's."""
    box: dict = {}

    def run():
        try:
            box["ds"] = ds.materialize()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"ftbridge-read-{conversion_id[:8]}", daemon=True)
    worker.start()
    worker.join(READ_TIMEOUT_S)
    if worker.is_alive():
        raise ConversionError(
            f"conversion {conversion_id}: its partitions were not read within {READ_TIMEOUT_S:.0f}s. "
            "Check `ray status` for dead nodes, or raise FTBRIDGE_READ_TIMEOUT_S.", conversion_id=conversion_id)
    if "error" in box:
        raise translate_read_error(box["error"], conversion_id) from None
    return box["ds"]


_FAILED_TASK = re.compile(r"Task (\d+) in stage [\d.]+ failed")
_JAVA_CAUSE = re.compile(r"^\s*(?:Caused by: )?([\w.$]+(?:Exception|Error)): (.+)$", re.M)


def spill_job_error(exc: BaseException, conversion_id: str) -> ConversionError:
    """A failed spill job as a ConversionError naming the partition and the root cause, not Py4J's trace.

    Spark reports the failed task's index, which in the spill job's only stage is the partition.
    """
    text = spark_adapter.error_text(exc)
    task = _FAILED_TASK.search(text)
    partition = int(task.group(1)) if task else None
    causes = [f"{name.rsplit('.', 1)[-1]}: {msg.strip()[:300]}" for name, msg in _JAVA_CAUSE.findall(text)
              if "Py4J" not in name and "SparkException" not in name]
    python_error = next((line.strip() for line in reversed(text.splitlines())
                         if re.match(r"^\s*\w+(Error|Exception): ", line) and "Py4J" not in line), None)
    cause = python_error or (causes[-1] if causes else text.strip().splitlines()[0][:500])
    where = f" in partition {partition}" if partition is not None else ""
    return ConversionError(
        f"the Spark spill job of conversion {conversion_id} failed{where}: {cause[:600]}. Nothing was recorded; "
        "fix the DataFrame's plan (or the executors) and convert again.",
        conversion_id=conversion_id, partition=partition, cause=cause)


def translate_read_error(exc: BaseException, conversion_id: str) -> BaseException:
    """The ftbridge error inside a Ray / Ray Data error chain, or a ConversionError naming the cause."""
    seen, node = set(), exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        cause = getattr(node, "cause", None)
        if isinstance(node, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
            node = cause  # Ray's wrapper also subclasses the cause's type: unwrap it first
            continue
        if isinstance(node, FtbridgeError):
            return node
        node = node.__cause__ or node.__context__
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return exc
    first = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""
    err = ConversionError(f"reading conversion {conversion_id} failed: {type(exc).__name__}: {first}",
                          conversion_id=conversion_id)
    err.__cause__ = exc
    return err


def writer_path(writer) -> str | None:
    return getattr(writer, "_ftbridge_catalog_path", None)


def _writer(catalog: Catalog):
    writer = get_writer(catalog)
    try:
        ray.get(writer.pid.remote(), timeout=120)
    except ray.exceptions.RayActorError as exc:
        from lineage.writer import forget_writer

        forget_writer(catalog)
        cause = getattr(exc, "cause", None) or exc
        if isinstance(getattr(exc, "cause", None), FtbridgeError):
            raise exc.cause from None
        raise ConversionError(f"the catalog writer for {catalog.path} could not start: {cause}") from exc
    writer._ftbridge_catalog_path = catalog.path
    return writer


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
    from pyspark import StorageLevel

    storage_level = storage_level or StorageLevel.MEMORY_AND_DISK
    check_supported(dataframe_schema(df))               # unsupported types fail before any work
    target = SpillTarget.resolve(spill_dir)
    target.check_writable()                             # so does an unwritable spill dir
    if recipe is not None:
        from ftbridge.convert.recipes import check_recipe
        check_recipe(recipe)
    cat = Catalog(catalog)
    writer = _writer(cat)                               # and a bad catalog
    conversion_id = uuid.uuid4().hex
    started = time.time()
    warm = prewarm_readers()
    batches = ArrowBatches(df, storage_level)
    schema = batches.schema
    spill_rdd = batches.spill_rdd(target, conversion_id)
    try:
        rows = run_bounded(df.sparkSession.sparkContext, SPARK_JOB_TIMEOUT_S,
                           f"spill job of conversion {conversion_id}", spill_rdd.collect, conversion_id=conversion_id)
        partitions = sorted(map(spill_metadata, rows), key=lambda p: p["partition_id"])
    except Exception as exc:
        batches.unpersist()
        if isinstance(exc, ConversionError):
            raise
        raise spill_job_error(exc, conversion_id) from exc
    spilled = time.time()
    del warm  # fire and forget: they only start worker processes
    n = batches.num_partitions
    if [p["partition_id"] for p in partitions] != list(range(n)):
        raise ConversionError(f"spill job returned partitions {[p['partition_id'] for p in partitions][:20]}, "
                              f"expected 0..{n - 1}", conversion_id=conversion_id)
    plan = _plan_text(df)
    sc = df.sparkSession.sparkContext
    record = {
        "conversion_id": conversion_id, "name": name, "created_at": now(), "status": "active",
        "plan_text": plan, "plan_hash": hashlib.sha256(plan.encode()).hexdigest(),
        "schema_b64": schema_to_b64(schema), "storage_level": str(storage_level), "spill_root": target.root,
        "node_local": target.node_local, "app_id": sc.applicationId, "spark_version": sc.version,
        "num_partitions": n, "total_rows": sum(p["num_rows"] for p in partitions),
        "total_bytes": sum(p["num_bytes"] for p in partitions), "recipe": recipe,
        "allow_nondeterministic": allow_nondeterministic, "driver_host": socket.gethostname(),
        "driver_pid": os.getpid(), "spill_format": batches.settings.to_json(),
    }
    ev = new_event(conversion_id, None, "created", started, source="driver",
                   detail=f"{n} partitions, {record['total_rows']} rows")
    call(writer, "record_conversion", record, partitions, [ev])
    live = _Live(conversion_id, batches, target, cat, writer, partitions, allow_nondeterministic,
                 cluster.current_or_none())
    _MANAGER.add(live)
    recorded = time.time()
    ds = _open_dataset(conversion_id, partitions, target, schema, writer, _MANAGER.service_name())
    LAST_TIMINGS.update(spill_s=spilled - started, catalog_s=recorded - spilled, read_s=time.time() - recorded)
    log.info("conversion %s: %d partitions, %d rows, %d bytes; spill %.2fs, catalog %.2fs, read %.2fs",
             conversion_id, n, record["total_rows"], record["total_bytes"], spilled - started, recorded - spilled,
             time.time() - recorded)
    return ds


def from_spark(df, **kwargs):
    """Same engine as from_spark_recoverable (kept for RayDP-style call sites)."""
    return from_spark_recoverable(df, **kwargs)


def open_recoverable(conversion_id: str, *, catalog=None):
    """Rebuild the Dataset of a recorded conversion (e.g. in a new driver after a crash).

    Partitions whose spill files survive are read; missing ones are rebuilt by this
    process's Spark (if it made the conversion) or the conversion's recipe.
    """
    cat = Catalog(catalog)
    with cat.read() as con:
        conv = queries.conversion(con, conversion_id)
        parts = queries.partitions(con, conv["conversion_id"])
    conversion_id = conv["conversion_id"]
    if conv["status"] == "released":
        raise ConversionReleasedError(
            f"conversion {conversion_id} was released at {conv['released_at']}; its spill files are gone. "
            "Convert the DataFrame again.", conversion_id=conversion_id)
    cluster.ensure_ray()
    writer = _writer(cat)
    target = SpillTarget(conv["spill_root"], bool(conv["node_local"]))
    service = None
    if conversion_id in _MANAGER.live:
        service = _MANAGER.service_name()
    elif conv.get("recipe"):
        from ftbridge.convert.recipes import RecipeRebuilder
        service = _MANAGER.add_handler(conversion_id, RecipeRebuilder(conv, parts, cat, writer).rebuild)
    return _open_dataset(conversion_id, parts, target, schema_from_b64(conv["schema_b64"]), writer, service)


def conversion_id(ds) -> str:
    """The conversion id of a Dataset returned by from_spark_recoverable / open_recoverable."""
    cid = getattr(ds, "_ftbridge_conversion_id", None)
    if cid is None:
        raise ConfigurationError("this Dataset did not come from ftbridge.from_spark_recoverable or "
                                 "open_recoverable (datasets derived by transforms have no conversion id)")
    return cid


def delete_spill_files(conv: dict, parts: list[dict]) -> int:
    """Delete a conversion's spill files and folders; return bytes freed."""
    target = SpillTarget(conv["spill_root"], bool(conv["node_local"]))
    fs, _ = target.filesystem()
    freed, dirs = 0, set()
    for p in parts:
        try:
            info = fs.get_file_info(p["path"])
            if info.type == pa.fs.FileType.File:
                freed += info.size or 0
                fs.delete_file(p["path"])
            dirs.add(p["path"].rsplit("/", 1)[0])
        except (OSError, pa.ArrowException) as exc:
            log.warning("could not delete %s: %s", p["path"], exc)
    for d in dirs:
        try:
            if d.rsplit("/", 1)[-1] == conv["conversion_id"]:  # never delete anything but our own folder
                fs.delete_dir(d)
        except (OSError, pa.ArrowException):
            pass
    return freed


def release(ds_or_id, *, catalog=None) -> int:
    """Free one conversion: delete its spill files, mark it released. Returns bytes freed."""
    conv_id = ds_or_id if isinstance(ds_or_id, str) else conversion_id(ds_or_id)
    catalog = catalog or (None if isinstance(ds_or_id, str) else getattr(ds_or_id, "_ftbridge_catalog", None))
    live = _MANAGER.forget(conv_id)
    cat = live.catalog if live else Catalog(catalog)
    with cat.read() as con:
        conv = queries.conversion(con, conv_id)
        parts = queries.partitions(con, conv["conversion_id"])
    freed = delete_spill_files(conv, parts)
    if live is not None:
        live.batches.unpersist()
    ev = new_event(conv["conversion_id"], None, "released", source="driver", detail=f"{freed} bytes freed")
    if ray.is_initialized():
        call(live.writer if live else _writer(cat), "set_status", conv["conversion_id"], "released", "released", [ev])
    else:
        from lineage import records
        with cat.write() as con:
            records.set_conversion_status(con, conv["conversion_id"], "released", "released")
            records.insert_events(con, [ev])
    return freed
