"""The foreign-error map: Py4J/Spark, Ray, DuckDB and Arrow errors as ftbridge errors, in one place.

Every site that catches an engine's exception hands it to a function here and raises what it
returns (``raise foreign.x(...) from exc``). Engine classes are recognised by their qualified
names, so this module imports no engine::

    Spark / Py4J   spark_job_failed, spark_start_failed, spark_plan_failed, rebuild_failed
    Ray            read_failed, rebuild_wait_failed, writer_call_failed, writer_start_failed
    DuckDB         catalog_open_failed
    Arrow / OS     partition_read_failed, schema_mismatch

A bounded wait that ran out maps to a retryable error (`ConversionTimeoutError`,
`CatalogUnavailableError`); a plan, file or type problem to a terminal one.
"""

from __future__ import annotations

import re

from ftbridge.common.errors import (
    CatalogCorruptError,
    CatalogUnavailableError,
    ClusterError,
    ConfigurationError,
    ConversionError,
    ConversionTimeoutError,
    FtbridgeError,
    PartitionLostError,
    SpillDiskFullError,
    TrainingFailedError,
)


def is_a(exc: BaseException, qualified_name: str) -> bool:
    """Whether `exc` is an instance of the engine class named like "ray.exceptions.GetTimeoutError",
    without importing the engine. Matched by package and class name: engines move classes between
    private modules (`duckdb.IOException` lives in `_duckdb`)."""
    package, name = qualified_name.split(".")[0], qualified_name.rsplit(".", 1)[-1]
    return any(c.__qualname__ == name and c.__module__.lstrip("_").split(".")[0] == package
               for c in type(exc).__mro__)


def first_line(exc: BaseException, limit: int = 500) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def ftbridge_error_in(exc: BaseException) -> FtbridgeError | None:
    """The ftbridge error somewhere in a (Ray-wrapped) exception chain, if any.

    Only causes (`raise ... from`, Ray's wrappers) are followed, never `__context__`: an error that
    happened while an ftbridge error was being handled (a writer call in an `except` block) is not
    that error."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        cause = getattr(node, "cause", None)
        if is_a(node, "ray.exceptions.RayTaskError") and isinstance(cause, BaseException):
            node = cause  # Ray's wrapper also subclasses the cause's type: unwrap it first
            continue
        if isinstance(node, FtbridgeError):
            return node
        node = node.__cause__
    return None


def root_cause(exc: BaseException) -> BaseException:
    """The deepest exception under Ray's wrappers (RayTaskError.cause, UserCodeException's cause):
    what the user's own code raised, when there is one."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        chain.append(node)
        node = getattr(node, "cause", None) if isinstance(getattr(node, "cause", None), BaseException) \
            else node.__cause__
    outside_ray = [e for e in chain if not type(e).__module__.startswith("ray")]
    return outside_ray[-1] if outside_ray else chain[-1]


_PY_ERROR = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$", re.M)


def _first_python_error(text: str) -> str | None:
    """The first `SomeError: message` line of a traceback text that is not one of Ray's wrappers."""
    for name, message in _PY_ERROR.findall(text):
        short = name.rsplit(".", 1)[-1]
        if not short.startswith(("Ray", "UserCode")):
            return f"{short}: {message.strip()[:500]}"
    return None


# -- Spark / Py4J ------------------------------------------------------------------------------
_FAILED_TASK = re.compile(r"Task (\d+) in stage [\d.]+ failed")
_JAVA_CAUSE = re.compile(r"^\s*(?:Caused by: )?([\w.$]+(?:Exception|Error)): (.+)$", re.M)


def spark_job_failed(spark_text: str, conversion_id: str) -> ConversionError:
    """A failed spill job, from everything Spark said (`adapters.spark.error_text`), as one
    ConversionError naming the partition and the root cause instead of Py4J's trace.

    Spark reports the failed task's index, which in the spill job's only stage is the partition.
    """
    task = _FAILED_TASK.search(spark_text)
    partition = int(task.group(1)) if task else None
    full = _DISK_FULL.search(spark_text)
    if full or "No space left on device" in spark_text:
        return spill_disk_full(conversion_id, partition, *(full.groups() if full else ("unknown", "unknown")))
    causes = [f"{name.rsplit('.', 1)[-1]}: {msg.strip()[:300]}" for name, msg in _JAVA_CAUSE.findall(spark_text)
              if "Py4J" not in name and "SparkException" not in name]
    python_error = next((line.strip() for line in reversed(spark_text.splitlines())
                         if re.match(r"^\s*\w+(Error|Exception): ", line) and "Py4J" not in line), None)
    stripped = spark_text.strip()
    cause = python_error or (causes[-1] if causes else (stripped.splitlines()[0][:500] if stripped else "unknown"))
    where = f" in partition {partition}" if partition is not None else ""
    return ConversionError(
        f"the Spark spill job of conversion {conversion_id} failed{where}: {cause[:600]}. Nothing was recorded; "
        "fix the DataFrame's plan (or the executors) and convert again.",
        conversion_id=conversion_id, partition=partition, cause=cause)


# What the spill writers (Python and JVM) raise on ENOSPC, so the driver can name node and root.
DISK_FULL_MARK = "SpillDiskFull[node={node},root={root}]"
_DISK_FULL = re.compile(r"SpillDiskFull\[node=([^,\]]*),root=([^\]]*)\]")


def spill_disk_full(conversion_id: str, partition: int | None, node_id: str, root: str) -> SpillDiskFullError:
    where = f" partition {partition}" if partition is not None else ""
    return SpillDiskFullError(
        f"conversion {conversion_id}: no space left on device writing{where} on Ray node {node_id} under spill "
        f"root {root}. Nothing was recorded and the partial files were removed. Free space there (`ftbridge gc` "
        "deletes the files of released conversions) or pass spill_dir= / set FTBRIDGE_SPILL_DIR to a disk with "
        "room, then convert again.",
        conversion_id=conversion_id, partition=partition, node_id=node_id, spill_root=root)


def spark_job_timed_out(what: str, timeout_s: float, **fields) -> ConversionTimeoutError:
    return ConversionTimeoutError(
        f"{what} did not finish within {timeout_s:.0f}s and was cancelled. Check that Spark executors are "
        "alive (`ftbridge.executors()`), or raise FTBRIDGE_SPARK_JOB_TIMEOUT_S / FTBRIDGE_REBUILD_JOB_TIMEOUT_S.",
        **fields)


def spark_start_failed(exc: BaseException, app_name: str, log_path: str | None = None,
                       tail: str = "") -> ClusterError:
    first = next((line for line in str(exc).splitlines() if "Exception" in line), str(exc)[:300])
    return ClusterError(f"Spark could not start its SparkContext: {first.strip()}. Check `configs=`"
                        + (f" and the driver JVM's log {log_path}:\n{tail}" if log_path else "."),
                        app_name=app_name, log_path=log_path)


def spark_plan_failed(exc: BaseException) -> FtbridgeError:
    if isinstance(exc, AttributeError):  # no `_jdf`: not a classic DataFrame
        return ConfigurationError("ftbridge converts classic (JVM-backed) Spark DataFrames; this one has no "
                                  "JVM plan (Spark Connect?). Use the session from ftbridge.init_spark.")
    return ConversionError(f"Spark could not plan the Arrow conversion: {first_line(exc)}")


def rebuild_failed(exc: BaseException, conversion_id: str, partition: int, why: str) -> FtbridgeError:
    """What a reader gets when the driver's rebuild of its partition raised."""
    if isinstance(exc, FtbridgeError):
        return exc
    return PartitionLostError(conversion_id=conversion_id, partition=partition, node_id=None,
                              cause=f"{why}; Spark could not rebuild it: {first_line(exc)}")


# -- Ray ---------------------------------------------------------------------------------------
def read_failed(exc: BaseException, conversion_id: str) -> BaseException:
    """A failed Dataset build: the ftbridge error inside Ray's chain, or a ConversionError naming the cause."""
    found = ftbridge_error_in(exc)
    if found is not None:
        return found
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return exc
    err = ConversionError(f"reading conversion {conversion_id} failed: {type(exc).__name__}: "
                          f"{first_line(exc) if str(exc).strip() else ''}", conversion_id=conversion_id)
    err.__cause__ = exc
    return err


def dataset_failed(exc: BaseException, conversion_id: str) -> BaseException:
    """Running a Ray Dataset (its transforms) for `to_spark` failed: the root cause, one line."""
    found = ftbridge_error_in(exc)
    if found is not None or isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return found or exc
    node = root_cause(exc)
    cause = f"{type(node).__name__}: {first_line(node)}"
    if type(node).__module__.startswith("ray"):  # the user's error crossed as traceback text only
        cause = _first_python_error(str(exc)) or cause
    err = ConversionError(f"to_spark {conversion_id}: the Dataset could not be computed: {cause}",
                          conversion_id=conversion_id, cause=cause)
    err.__cause__ = exc
    return err


def read_timed_out(conversion_id: str, timeout_s: float) -> ConversionTimeoutError:
    return ConversionTimeoutError(
        f"conversion {conversion_id}: its partitions were not read within {timeout_s:.0f}s. "
        "Check `ray status` for dead nodes, or raise FTBRIDGE_READ_TIMEOUT_S.", conversion_id=conversion_id)


def rebuild_wait_failed(exc: BaseException, conversion_id: str, partition: int, node_id: str | None, why: str,
                        timeout_s: float) -> FtbridgeError:
    """A read task's request to the rebuild service failed: say why the partition is lost."""
    found = ftbridge_error_in(exc)
    if found is not None:
        return found
    if isinstance(exc, ValueError) and not is_a(exc, "ray.exceptions.RayError"):
        cause = "the Spark session that could rebuild it has stopped"  # get_actor: no such actor
    elif is_a(exc, "ray.exceptions.GetTimeoutError"):
        cause = f"the rebuild did not finish within {timeout_s:.0f}s"
    elif is_a(exc, "ray.exceptions.RayActorError"):
        cause = "the rebuild service died (driver gone?)"
    else:
        cause = f"rebuild failed: {first_line(exc)}"
    return PartitionLostError(conversion_id=conversion_id, partition=partition, node_id=node_id,
                              cause=f"{why}; {cause}")


def training_failed(exc: BaseException, run_id: str, run_name: str, storage: str) -> FtbridgeError:
    """Ray Train's TrainingFailedError (or anything else `fit()` raised) as ftbridge's, naming the run."""
    workers = getattr(exc, "worker_failures", None)  # Ray Train's WorkerGroupError: rank -> exception
    if isinstance(workers, dict) and workers:
        exc = workers[min(workers)]
    found = ftbridge_error_in(exc)
    cause = root_cause(exc)
    text = f"{type(found).__name__}: {found}" if found is not None else f"{type(cause).__name__}: {first_line(cause)}"
    return TrainingFailedError(
        f"training run {run_name} ({run_id[:12]}) failed: {text}. Its timeline: `ftbridge show {run_id[:12]}`; "
        f"its checkpoints and worker logs are under {storage}.", run_id=run_id, cause=text)


def writer_call_failed(exc: BaseException, method: str, timeout_s: float) -> FtbridgeError:
    if is_a(exc, "ray.exceptions.GetTimeoutError"):
        return CatalogUnavailableError(
            f"the catalog writer did not answer {method} within {timeout_s:.0f}s; is the Ray cluster healthy? "
            "Raise FTBRIDGE_CATALOG_CALL_TIMEOUT_S if the catalog disk is slow.")
    found = ftbridge_error_in(exc)
    if found is not None:
        return found
    return CatalogUnavailableError(f"the catalog writer died during {method}: {first_line(exc)}")


def writer_start_failed(exc: BaseException, path: str) -> FtbridgeError:
    cause = getattr(exc, "cause", None)
    found = ftbridge_error_in(exc) or (cause if isinstance(cause, FtbridgeError) else None)
    if found is not None:
        return found
    cause = getattr(exc, "cause", None) or exc
    return CatalogUnavailableError(f"the catalog writer for {path} could not start: {first_line(cause)}", path=path)


# -- DuckDB ------------------------------------------------------------------------------------
def catalog_open_failed(exc: BaseException, path: str) -> FtbridgeError:
    """A DuckDB error opening the catalog: busy (retryable) or not a catalog (terminal)."""
    if is_a(exc, "duckdb.IOException") and "lock" in str(exc).lower():
        return CatalogUnavailableError(f"catalog {path} is busy: {first_line(exc)}", path=path)
    return CatalogCorruptError(
        f"{path} is not a readable ftbridge catalog ({first_line(exc)}). Move it aside; ftbridge will "
        "create a new one, and the spill files it listed stay on disk.", path=path)


# -- Arrow / OS --------------------------------------------------------------------------------
def partition_read_failed(exc: BaseException, conversion_id: str, partition: int, node_id: str) -> FtbridgeError:
    """An unexpected error serving one partition in a read task: name the partition, keep the cause."""
    if isinstance(exc, FtbridgeError):
        return exc
    return ConversionError(
        f"reading partition {partition} of conversion {conversion_id} on node {node_id} failed: "
        f"{type(exc).__name__}: {first_line(exc) if str(exc) else ''}",
        conversion_id=conversion_id, partition=partition, node_id=node_id)


def schema_mismatch(exc: BaseException, conversion_id: str, partition: int, node_id: str | None,
                    found: object, wanted: object) -> ConversionError:
    return ConversionError(
        f"partition {partition} of conversion {conversion_id}: its Arrow data ({found}) does not match the "
        f"conversion's schema ({wanted}): {exc}. Convert again with this ftbridge.",
        conversion_id=conversion_id, partition=partition, node_id=node_id)
