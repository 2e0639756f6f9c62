"""Every private PySpark / Py4J call ftbridge makes, in one place.

ftbridge needs a few things PySpark has no public API for: the RDD of Arrow record-batch
messages Spark's JVM makes for `df.toArrow()`, the Arrow schema Spark writes ahead of those
batches, a JVM storage level, the optimized plan's text and the driver's executor list.
They are all here, so a PySpark release that changes one of them breaks one module, and
`check()` (run by tests/unit/test_adapters.py on every cell of the matrix) says which name
moved and on which version.

Checked against PySpark 3.5.0, 3.5.x, 4.0.x, 4.1.x, 4.2.x and 4.3.x.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

TESTED = ("3.5", "4.0", "4.1", "4.2", "4.3")


def pyspark_version() -> str:
    import pyspark

    return pyspark.__version__


def spark_home() -> str:
    """SPARK_HOME of the installed PySpark (its jars and launcher scripts)."""
    from pyspark.find_spark_home import _find_spark_home

    return _find_spark_home()


def launch_driver_jvm(conf: dict[str, str], log_path: str, tmp_dir: str | None = None) -> int | None:
    """Start PySpark's driver JVM now, its stdout/stderr going to `log_path`; return its pid.

    PySpark starts it on the first SparkContext with the JVM's output on the user's
    terminal (Spark's WARN lines, `Using incubator modules`). `launch_gateway` takes Popen
    arguments for exactly this; `SparkContext._ensure_initialized` then adopts the gateway.
    Returns None when a driver JVM is already running in this process (it is reused as is).
    `tmp_dir`: where `launch_gateway`'s connection-info folder (`tempfile.mkdtemp()`, holding the
    gateway's port and secret) goes, instead of the system temp dir, where a process killed
    while the JVM starts would leave it.
    """
    import subprocess
    import tempfile

    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None:
        return None
    spark_conf = SparkConf(loadDefaults=False)
    for key, value in conf.items():
        spark_conf.set(key, value)
    previous = tempfile.tempdir
    if tmp_dir is not None:
        tempfile.tempdir = tmp_dir
    try:
        with open(log_path, "ab") as out:
            gateway = launch_gateway(spark_conf, popen_kwargs={"stdout": out, "stderr": subprocess.STDOUT})
    finally:
        tempfile.tempdir = previous
    SparkContext._ensure_initialized(gateway=gateway)
    proc = getattr(gateway, "proc", None)
    return proc.pid if proc is not None else None


def arrow_batch_rdd(df, batch_rows: int, time_zone: str, large_var_types: bool):
    """(JavaRDD of Arrow IPC record-batch messages for `df`, whether they use large var types).

    PySpark 4.3 takes the batch settings as arguments. Older releases read them from the
    session conf (the caller sets it to the same values around this call) - except that some
    (3.5.9) ignore `useLargeVarTypes` there, so what the batches really use is probed once.
    """
    jdf = df._jdf
    try:
        rdd = jdf.toArrowBatchRdd(int(batch_rows), time_zone, True, bool(large_var_types))
        return rdd.toJavaRDD(), bool(large_var_types)
    except Exception as exc:
        if not _is_py4j_signature_error(exc):
            raise
    rdd = jdf.toArrowBatchRdd(jdf.queryExecution().executedPlan())
    return rdd.toJavaRDD(), bool(large_var_types) and _plan_path_uses_large_types(df.sparkSession)


_LARGE_PROBE: dict = {}


def _plan_path_uses_large_types(spark) -> bool:
    """Does this release's plan-only `toArrowBatchRdd` follow `useLargeVarTypes=true`? (One tiny job.)"""
    import pyarrow as pa

    key = pyspark_version()
    if key not in _LARGE_PROBE:
        probe = spark.sql("SELECT 'ab' AS s")._jdf
        message = bytes(probe.toArrowBatchRdd(probe.queryExecution().executedPlan()).toJavaRDD().first())
        try:
            batch = pa.ipc.read_record_batch(pa.py_buffer(message), pa.schema([("s", pa.string())]))
            batch.validate(full=True)
            _LARGE_PROBE[key] = batch.column(0).to_pylist() != ["ab"]
        except (pa.ArrowException, ValueError):
            _LARGE_PROBE[key] = True
        log.debug("PySpark %s: plan-only toArrowBatchRdd uses large var types: %s", key, _LARGE_PROBE[key])
    return _LARGE_PROBE[key]


class BatchRDD:
    """A JVM RDD of Arrow IPC record-batch messages (`arrow_batch_rdd`), persisted, held through
    Py4J. Everything the conversion engine does with it goes through here: its Python view,
    its partition count, a spill job run by a JVM class (the spill writer), and unpersist.
    """

    def __init__(self, jrdd, sc, storage_level) -> None:
        self._sc = sc
        self._jrdd = jrdd.persist(java_storage_level(sc, storage_level))
        self.num_partitions = int(self._jrdd.getNumPartitions())
        self.rdd = bytes_rdd(self._jrdd, sc)  # elements: `bytes`, one batch message each

    def map_partitions_in_jvm(self, function_class, *args):
        """Run `function_class(*args)` (a JVM `Function2[Integer, Iterator, Iterator]` such as the
        spill writer, from `jvm_class`) over each partition with its index; the results as
        `bytes` elements of a Python RDD."""
        return bytes_rdd(self._jrdd.mapPartitionsWithIndex(function_class(*args), True), self._sc)

    def unpersist(self) -> None:
        """Free Spark's copy (blocking=False); quiet when Spark has already stopped."""
        try:
            self._jrdd.unpersist(False)
        except Exception as exc:  # Spark already stopped: nothing left to free
            log.debug("unpersist: %s", exc)


class StreamedJob:
    """A job over a bytes RDD run by ftbridge's JVM `SpillJob` (from `jvm_class`): submitted at
    once, its partitions' rows taken as their tasks end, not all at the end as `collect` gives
    them. Takes the calling thread's job group, as `collect` does."""

    def __init__(self, job_class, rdd) -> None:
        self._job = job_class(rdd._jrdd)

    def take(self, wait_s: float) -> list[bytes]:
        """The rows that arrived (waits up to `wait_s` for the first); [] when none came."""
        text = self._job.take(int(wait_s * 1000))
        return [row.encode() for row in text.split("\n")] if text else []

    def completed(self) -> bool:
        return bool(self._job.isCompleted())

    def result(self) -> None:
        """Once the job has ended: nothing, or Spark's own exception (a Py4JJavaError, as `collect`'s)."""
        self._job.get()

    def cancel(self) -> None:
        try:
            self._job.cancel()
        except Exception as exc:  # Spark already stopped: nothing left to cancel
            log.debug("cancel: %s", exc)


def bytes_rdd(jrdd, sc):
    """A PySpark RDD over a JavaRDD of byte arrays, elements passed through as `bytes`."""
    from pyspark.rdd import RDD
    from pyspark.serializers import NoOpSerializer

    return RDD(jrdd, sc, NoOpSerializer())


def arrow_schema_message(df, time_zone: str, large_var_types: bool) -> bytes:
    """The IPC schema message of the batches Spark's JVM writes for `df` (the call Spark makes)."""
    jvm = df.sparkSession.sparkContext._jvm
    arrow_utils = jvm.org.apache.spark.sql.util.ArrowUtils
    jschema = df._jdf.schema()
    # Overloads by release (positions differ, so each is tried by arity, newest first):
    #   4.3+: (schema, tz, errorOnDuplicatedFieldNames, largeVarTypes, losslessInternalTypes)
    #         and (schema, tz, largeVarTypes) - NOT the 3.5 meaning of the third argument
    #   4.0-4.2: (schema, tz, errorOnDuplicatedFieldNames, largeVarTypes)
    #   3.5: (schema, tz, errorOnDuplicatedFieldNames)
    attempts = [
        lambda: arrow_utils.toArrowSchema(jschema, time_zone, True, large_var_types,
                                          getattr(arrow_utils, "toArrowSchema$default$5")()),
        lambda: arrow_utils.toArrowSchema(jschema, time_zone, True, large_var_types),
        lambda: arrow_utils.toArrowSchema(jschema, time_zone, True),
    ]
    for attempt in attempts:
        try:
            arrow = attempt()
            break
        except Exception as exc:
            if not _is_py4j_signature_error(exc):
                raise
    else:
        raise RuntimeError(f"PySpark {pyspark_version()}: no known ArrowUtils.toArrowSchema overload")
    out = jvm.java.io.ByteArrayOutputStream()
    channel = jvm.org.apache.arrow.vector.ipc.WriteChannel(jvm.java.nio.channels.Channels.newChannel(out))
    jvm.org.apache.arrow.vector.ipc.message.MessageSerializer.serialize(channel, arrow)
    return bytes(out.toByteArray())


def _is_py4j_signature_error(exc: Exception) -> bool:
    """Py4J's answer when no overload takes these arguments (the call itself never ran)."""
    text = str(exc)
    return "does not exist" in text and ("Method " in text or "in the JVM" in text)


def jvm_schema_fields(df) -> list[tuple[str, str, str]]:
    """(name, simple type string, JSON) of each top-level column, straight from the JVM.

    Used when PySpark cannot describe a JVM type itself (3.5: intervals), to name the column.
    """
    return [(f.name(), f.dataType().simpleString(), f.dataType().json()) for f in df._jdf.schema().fields()]


def parse_type_json(text: str):
    from pyspark.sql.types import _parse_datatype_json_string

    return _parse_datatype_json_string(text)


def java_storage_level(sc, storage_level):
    return sc._getJavaStorageLevel(storage_level)


def plan_text(df) -> str:
    return str(df._jdf.queryExecution().optimizedPlan().toString())


# Leaves of an analyzed plan whose data the plan text and the input files identify.
PLAN_LEAVES = ("Range", "OneRowRelation")   # the plan is the data
FILE_LEAVES = ("LogicalRelation", "DataSourceV2Relation")  # file sources: their files are the data


def plan_inputs(df) -> tuple[bool, str, list[str], list[str]]:
    """What identifies `df`'s data: (its analyzed plan is deterministic, the plan's text, the
    leaves that neither the text nor files identify (in-memory or RDD data, tables of other
    sources), the input files of its file sources). From the analyzed plan, so a cached
    DataFrame is identified as the plan it caches."""
    analyzed = df._jdf.queryExecution().analyzed()
    leaves = analyzed.collectLeaves()
    unknown, files = [], []
    for i in range(leaves.size()):
        leaf = leaves.apply(i)
        kind = str(leaf.getClass().getSimpleName())
        if kind in PLAN_LEAVES:
            continue
        listed = _leaf_files(leaf, kind) if kind in FILE_LEAVES else None
        if listed is None:
            unknown.append(kind)
        else:
            files.extend(listed)
    return bool(analyzed.deterministic()), str(analyzed.toString()), unknown, sorted(set(files))


def _leaf_files(leaf, kind: str) -> list[str] | None:
    """The input files of a file-source leaf (None: not a file source)."""
    try:
        if kind == "LogicalRelation":
            return [str(f) for f in leaf.relation().inputFiles()]  # a HadoopFsRelation; JDBC & co. have none
        index = leaf.table().fileIndex()  # a FileTable (DataSourceV2Relation of a file source)
        return [str(f) for f in index.inputFiles()]
    except Exception:  # Py4J: not a file relation (no such method)
        return None


def executor_ids(sc) -> list[str]:
    """Executor ids the driver knows (the driver itself included on some releases)."""
    ids = sc._jsc.sc().getExecutorIds()
    return [str(ids.apply(i)) for i in range(ids.size())]


def executor_hosts(sc) -> list[str]:
    """The hosts of the live executors, the driver's own block manager left out (Spark's
    `SparkStatusTracker.getExecutorInfos` lists both); [] in local mode, where the driver is the
    executor. The driver's block manager id comes from `SparkContext.env` (`private[spark]` in
    Scala, public in bytecode, Spark 3.5-4.x)."""
    try:
        jsc = sc._jsc.sc()
        own = jsc.env().blockManager().blockManagerId()
        infos = jsc.statusTracker().getExecutorInfos()
        hosts = {str(i.host()) for i in infos
                 if not (str(i.host()) == str(own.host()) and int(i.port()) == int(own.port()))}
    except Exception as exc:  # Py4J: a stopped context, a release without these names
        log.debug("executor hosts: %s", exc)
        return []
    return sorted(hosts)


def remove_executors(sc, ids: list[str], why: str) -> list[str]:
    """Tell the driver that executors `ids` are lost, as if their processes had ended; return the
    ids it was told about. Spark then reschedules their tasks and stops asking their block managers
    for blocks at once, instead of waiting for its own network timeout (a host that stops answering
    sends no TCP reset). The scheduler backend's `RemoveExecutor` message and `ExecutorProcessLost`
    reason are `private[spark]` in Scala, public in bytecode (Spark 3.5-4.x); `check_jvm` names them.
    """
    jvm = sc._jvm
    backend = sc._jsc.sc().schedulerBackend()
    message = getattr(jvm.org.apache.spark.scheduler.cluster, "CoarseGrainedClusterMessages$RemoveExecutor")
    known = set(executor_ids(sc))
    told = []
    for executor_id in ids:
        if executor_id not in known:
            continue
        reason = jvm.org.apache.spark.scheduler.ExecutorProcessLost(why, jvm.scala.Option.apply(None), False)
        backend.driverEndpoint().send(message(executor_id, reason))
        told.append(executor_id)
    return told


def check_jvm(sc) -> list[str]:
    """JVM names this module uses that the running Spark lacks ([] when all are there)."""
    from py4j.java_gateway import JavaClass

    jvm = sc._jvm
    missing = []
    for dotted in ("org.apache.spark.scheduler.cluster.CoarseGrainedClusterMessages$RemoveExecutor",
                   "org.apache.spark.scheduler.ExecutorProcessLost", "org.apache.spark.sql.util.ArrowUtils",
                   "org.apache.spark.util.MutableURLClassLoader"):
        package, _, name = dotted.rpartition(".")
        node = jvm
        for part in package.split("."):
            node = getattr(node, part)
        if not isinstance(getattr(node, name, None), JavaClass):
            missing.append(dotted)
    backend = sc._jsc.sc().schedulerBackend()
    if not hasattr(backend, "driverEndpoint"):
        missing.append("CoarseGrainedSchedulerBackend.driverEndpoint")
    if not hasattr(sc._jsc.sc(), "statusStore") or not hasattr(sc._jsc.sc().statusStore(), "taskList"):
        missing.append("SparkContext.statusStore.taskList")
    if not hasattr(sc._jsc.sc(), "env") or not hasattr(sc._jsc.sc().env(), "blockManager"):
        missing.append("SparkContext.env.blockManager")
    return missing


def block_manager_addresses(sc) -> list[str]:
    """'host:port' of every block manager the driver knows: the executors' and its own."""
    return sorted(str(sc._jsc.sc().getExecutorMemoryStatus().keys().mkString(",")).split(","))


def executor_target(sc) -> int | None:
    """Spark's dynamic-allocation executor target (default resource profile), or None.

    `SparkContext.executorAllocationManager` and its per-profile target map are
    `private[spark]` in Scala, public in bytecode (Spark 3.5-4.x).
    """
    try:
        manager = sc._jsc.sc().executorAllocationManager()
        if manager.isEmpty():
            return None
        value = manager.get().numExecutorsTargetPerResourceProfileId().get(0)
        return int(value.get()) if value.isDefined() else None
    except Exception:  # Py4J: a release without these names, or a stopped context
        return None


def jvm_class(sc, dotted: str):
    """A class in the driver JVM (e.g. one from `spark.jars`), or None when it is not loaded."""
    from py4j.java_gateway import JavaClass

    node = sc._jvm
    try:
        for part in dotted.split("."):
            node = getattr(node, part)
    except Exception:
        return None
    return node if isinstance(node, JavaClass) else None


def failed_task_attempts(sc, group: str) -> list[dict]:
    """The task attempts that failed in the jobs of job group `group` (which Spark then ran
    again): {stage, stage_attempt, index, final_stage, executor, host, reason} each.

    Job and stage ids come from the public StatusTracker; the attempts from the driver's
    status store (`SparkContext.statusStore`, `private[spark]` in Scala, public in bytecode,
    Spark 3.5-4.x). A stage run again (stage_attempt > 0) with no failed task of its own is one
    entry with index None. [] when Spark no longer knows the group's jobs.
    """
    tracker = sc.statusTracker()
    out: list[dict] = []
    try:
        store = sc._jsc.sc().statusStore()
        for job in tracker.getJobIdsForGroup(group):
            info = tracker.getJobInfo(job)
            stages = sorted(info.stageIds) if info is not None else []
            for stage in stages:
                sinfo = tracker.getStageInfo(stage)
                if sinfo is None or (sinfo.numFailedTasks == 0 and sinfo.currentAttemptId == 0):
                    continue
                for attempt in range(sinfo.currentAttemptId + 1):
                    before = len(out)
                    tasks = store.taskList(stage, attempt, 100_000)
                    for i in range(tasks.size()):
                        task = tasks.apply(i)
                        if str(task.status()) != "FAILED":
                            continue
                        reason = task.errorMessage()
                        out.append({"stage": stage, "stage_attempt": attempt, "index": int(task.index()),
                                    "final_stage": stage == stages[-1], "executor": str(task.executorId()),
                                    "host": str(task.host()),
                                    "reason": str(reason.get()).splitlines()[0][:500] if reason.isDefined() else ""})
                    if attempt > 0 and len(out) == before:
                        out.append({"stage": stage, "stage_attempt": attempt, "index": None,
                                    "final_stage": stage == stages[-1], "executor": None, "host": None,
                                    "reason": "the stage ran again (its earlier output was lost)"})
    except Exception as exc:  # Py4J: a stopped context, a release without these names
        log.debug("failed task attempts of %s: %s", group, exc)
    return out


def driver_java(sc) -> str:
    """The `java` binary the running driver JVM was started with."""
    import os

    return os.path.join(str(sc._jvm.java.lang.System.getProperty("java.home")), "bin", "java")


def add_jar_to_running_session(sc, path: str) -> str | None:
    """Put a jar on a running session's class path, driver and executors; None when done, else
    why it could not be.

    Executors fetch it through `SparkContext.addJar` (public) before their next task. The driver
    has no public way: Spark's launcher gives the driver's threads (the Py4J ones included) a
    `MutableURLClassLoader` as their context class loader, and its `addURL` is public in
    bytecode (Spark 3.5-4.x), so the class resolves there for the Py4J threads that share it.
    """
    try:
        loader = sc._jvm.java.lang.Thread.currentThread().getContextClassLoader()
        kind = str(loader.getClass().getName()) if loader is not None else "none"
        if not kind.endswith("MutableURLClassLoader"):
            return f"the driver's class loader is {kind}, which cannot take a jar at run time"
        sc._jsc.sc().addJar(path)
        loader.addURL(sc._jvm.java.io.File(path).toURI().toURL())
    except Exception as exc:  # Py4J: a stopped context, a release without these names
        return f"adding {path} to the session failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
    return None


def collect_arrow_batches(df) -> list:
    """Arrow record batches of `df` on the driver (PySpark 3.5 has no `toArrow`; tests use it)."""
    return df._collect_as_arrow()


def pyspark_arrow_schema(spark_schema, large_var_types: bool = False):
    """PySpark's own Spark -> Arrow schema mapping (UTC timestamps), as its `toArrow` and
    `mapInArrow` use it; `large_var_types` where the release has them (4.x). PySpark 4.3 asks
    for the time zone of timestamps explicitly; earlier releases assume UTC."""
    import inspect

    from pyspark.sql.pandas.types import to_arrow_schema

    params = inspect.signature(to_arrow_schema).parameters
    kwargs: dict[str, Any] = {}
    if "timezone" in params:
        kwargs["timezone"] = "UTC"
    if large_var_types and "prefers_large_types" in params:
        kwargs["prefers_large_types"] = True
    return to_arrow_schema(spark_schema, **kwargs)


def spark_schema_of_arrow(schema):
    """PySpark's Arrow -> Spark schema mapping (raises PySpark's TypeError for types it lacks).
    A timestamp without a time zone becomes TIMESTAMP_NTZ, so Spark -> Ray -> Spark keeps it."""
    import inspect

    from pyspark.sql.pandas.types import from_arrow_schema

    if "prefer_timestamp_ntz" in inspect.signature(from_arrow_schema).parameters:
        return from_arrow_schema(schema, prefer_timestamp_ntz=True)
    return from_arrow_schema(schema)


def error_text(exc: BaseException) -> str:
    """Everything Spark said about a failed call: PySpark's message, the JVM's description and
    stack trace of a captured exception, a Py4J error's Java message (failed task, stage, cause)."""
    parts = [str(exc)]
    for attr in ("_desc", "_stackTrace", "desc", "stackTrace"):
        value = getattr(exc, attr, None)
        if value:
            parts.append(str(value))
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    if java is not None:
        try:
            parts.append(str(java.getMessage()))
        except Exception:  # the JVM may be gone; what we have is enough
            pass
    return "\n".join(parts)


def check() -> list[str]:
    """Names this module uses that the installed PySpark lacks ([] when all are there)."""
    import pyspark.find_spark_home as fsh
    import pyspark.java_gateway as java_gateway
    import pyspark.rdd as rdd
    import pyspark.serializers as ser
    import pyspark.sql.pandas.types as pandas_types
    import pyspark.sql.types as types
    from pyspark import SparkContext
    from pyspark.sql.pandas.conversion import PandasConversionMixin

    wanted = [(fsh, "_find_spark_home"), (ser, "NoOpSerializer"), (rdd, "RDD"),
              (types, "_parse_datatype_json_string"), (SparkContext, "_getJavaStorageLevel"),
              (PandasConversionMixin, "_collect_as_arrow"), (pandas_types, "from_arrow_schema"),
              (pandas_types, "to_arrow_schema"), (java_gateway, "launch_gateway"),
              (SparkContext, "_ensure_initialized"), (SparkContext, "_gateway")]
    return [f"{getattr(obj, '__name__', obj)}.{name}" for obj, name in wanted if not hasattr(obj, name)]
