"""Ray and Ray Data calls whose shape differs across the Ray releases of the matrix.

ftbridge builds its Datasets through Ray Data's public `Datasource` / `ReadTask` API. Two
details of that API moved between releases (the fields of `BlockMetadata`, the keyword
arguments of `ReadTask`), and Ray Data reads its options from a process-wide `DataContext`
that each Dataset copies when it is created. Those three things live here; `check()` names
what the installed Ray lacks, and tests/unit/test_adapters.py runs it on every cell.

Checked against Ray 2.50.0 and 2.60.0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import inspect
import logging
import os
import socket
import threading
import warnings
from typing import Any

TESTED = ("2.50", "2.60")
_CONTEXT_LOCK = threading.Lock()


def ray_version() -> str:
    import ray

    return ray.__version__


# Ray's worker pool keeps as many idle workers per node as the node has CPUs and kills the
# others after 1 s idle. ftbridge's read, fetch and rebuild tasks ask for no CPU, so on a node
# with one or two CPUs (each held by an executor) every conversion's reads started new worker
# processes again (2-5 s each on a busy 2-core machine: measured, a chaos scenario's reads went
# from 25-35 s to 5-8 s with the pool kept). Clusters that ftbridge starts itself keep a few.
WORKER_POOL_CONFIG = {"num_workers_soft_limit": 4, "idle_worker_killing_time_threshold_ms": 120_000}


def head_node_args(**args) -> dict:
    """Arguments of a `ray.cluster_utils.Cluster` head that ftbridge (the demo, the chaos runner,
    the tests) starts: `args` plus the worker-pool settings above (Ray's `_system_config`)."""
    return {**args, "_system_config": dict(WORKER_POOL_CONFIG)}


def block_metadata(num_rows: int, size_bytes: int):
    """A `ray.data.block.BlockMetadata` with only the fields this Ray release has."""
    from ray.data.block import BlockMetadata

    known = {f.name for f in dataclasses.fields(BlockMetadata)}
    values: dict[str, Any] = {"num_rows": num_rows, "size_bytes": size_bytes, "input_files": None,
                              "exec_stats": None, "schema": None}
    return BlockMetadata(**{k: v for k, v in values.items() if k in known})


@functools.lru_cache(maxsize=1)
def _read_task_params() -> frozenset:
    from ray.data import ReadTask

    return frozenset(inspect.signature(ReadTask.__init__).parameters)


def read_task(read_fn, num_rows: int, size_bytes: int, schema, per_task_row_limit: int | None = None):
    """A `ray.data.ReadTask` whose metadata and schema are known up front (no metadata tasks)."""
    from ray.data import ReadTask

    params = _read_task_params()
    kwargs = {}
    if "schema" in params:
        kwargs["schema"] = schema
    if "per_task_row_limit" in params and per_task_row_limit is not None:
        kwargs["per_task_row_limit"] = per_task_row_limit
    return ReadTask(read_fn, block_metadata(num_rows, size_bytes), **kwargs)


@contextlib.contextmanager
def data_context(preserve_order: bool = True):
    """Set Ray Data options for the Datasets created inside the block, then restore them.

    A Dataset copies the current DataContext when it is created, so the options stick to
    the Datasets made here and never change the user's own Datasets.
    """
    from ray.data import DataContext

    with _CONTEXT_LOCK:
        ctx = DataContext.get_current()
        before = ctx.execution_options.preserve_order
        ctx.execution_options.preserve_order = preserve_order
        try:
            yield ctx
        finally:
            ctx.execution_options.preserve_order = before


def target_block_bytes() -> int | None:
    """Ray Data's target block size in this process's DataContext (None: blocks of any size)."""
    from ray.data import DataContext

    return DataContext.get_current().target_max_block_size


@contextlib.contextmanager
def preserving_order(ds):
    """Execute `ds` (inside the block) with `preserve_order` on its own DataContext, then restore it.

    A Dataset copies the DataContext when it is created, so a lazy Dataset made without
    `preserve_order` would otherwise produce its blocks in completion order.
    """
    options = ds.context.execution_options
    before = options.preserve_order
    options.preserve_order = True
    try:
        yield ds
    finally:
        options.preserve_order = before


def ray_client_in_use(address: str | None) -> bool:
    """Whether this driver is, or would become, a Ray client (`ray://` address, live client)."""
    if address and address.strip().startswith("ray://"):
        return True
    try:
        from ray.util.client import ray as client_ray

        return bool(client_ray.is_connected())
    except Exception:  # no client support installed: then it is not in use either
        return False


def route_error_messages(log_path: str) -> None:
    """Send the error messages Ray pushes to this driver ("A worker died ...", printed to stdout
    whatever `log_to_driver` says) to the `ftbridge.ray` logger and the file `log_path`."""

    import ray._private.worker as worker

    if getattr(worker.print_to_stdstream, "ftbridge_log", None) == log_path:
        return
    logger = logging.getLogger("ftbridge.ray")
    if not any(getattr(h, "baseFilename", None) == log_path for h in logger.handlers):
        handler = logging.FileHandler(log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        handler.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # the file only: the terminal is what this is keeping them from

    def to_log(data, ignore_prefix: bool = False, **_ignored) -> None:
        for line in data.get("lines", []):
            logger.info("(%s) %s", data.get("pid", "ray"), line)

    to_log.ftbridge_log = log_path  # type: ignore[attr-defined]  # marks Ray's printer as ours
    worker.print_to_stdstream = to_log


def session_log_dir() -> str | None:
    """The log folder of the Ray session this driver is connected to (None if unknown)."""
    import ray._private.worker as worker

    node = getattr(worker, "_global_node", None)
    try:
        return os.path.join(node.get_session_dir_path(), "logs") if node is not None else None
    except Exception:  # an older or newer Node without the method: the link is a convenience
        return None


_QUIET: dict = {"depth": 0, "level": 0}


@contextlib.contextmanager
def quiet_execution(ds):
    """Execute `ds` (inside the block) without Ray Data's progress bars and INFO lines.

    ftbridge's own reads are not the user's pipeline; their progress goes to ftbridge's log.
    The Dataset's own context and the `ray.data` logger level are restored afterwards (the
    last of concurrent quiet blocks restores the level).
    """
    import logging

    data_logger = logging.getLogger("ray.data")
    before_bars = ds.context.enable_progress_bars
    with _CONTEXT_LOCK:
        if _QUIET["depth"] == 0:
            _QUIET["level"] = data_logger.level
            data_logger.setLevel(max(logging.ERROR, data_logger.getEffectiveLevel()))
        _QUIET["depth"] += 1
        ds.context.enable_progress_bars = False
    try:
        yield ds
    finally:
        with _CONTEXT_LOCK:
            ds.context.enable_progress_bars = before_bars
            _QUIET["depth"] -= 1
            if _QUIET["depth"] == 0:
                data_logger.setLevel(_QUIET["level"])


def join_cluster(gcs_address: str, namespace: str) -> None:
    """Join the cluster as a driver from a process outside the Ray job (a Spark Python worker),
    on first use. Ray is imported only here, so such processes pay for it only when they need it."""
    import ray

    if not ray.is_initialized():
        ray.init(address=gcs_address, namespace=namespace, log_to_driver=False, logging_level=logging.ERROR)


def this_host_node(gcs_address: str, namespace: str) -> str | None:
    """The Ray node on this host, for a process outside the Ray job that ftbridge did not give
    one (a Spark Python worker of a session it did not start): the alive node at the address
    this host reaches the GCS from (of several, the first by id, as files written here are
    recorded; on a one-machine cluster with several nodes, None)."""
    import ray

    join_cluster(gcs_address, namespace)
    host, port = gcs_address.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, int(port)))  # a UDP connect sends nothing: it picks the route
        here = probe.getsockname()[0]
    alive = [n for n in ray.nodes() if n.get("Alive")]
    found = sorted(n["NodeID"] for n in alive if n.get("NodeManagerAddress") == here)
    if len({n.get("NodeManagerAddress") for n in alive}) == 1:  # one machine: every node reads its files
        return found[0] if len(found) == 1 else None
    return found[0] if found else None  # the one named for this host's files (spill.target.ray_nodes_by_address)


def call_named_actor(gcs_address: str, namespace: str, name: str, method: str, args: tuple, timeout_s: float):
    """Call a named actor's method from a process outside the Ray job (see `join_cluster`)."""
    import ray

    join_cluster(gcs_address, namespace)
    actor = ray.get_actor(name, namespace=namespace)
    return ray.get(getattr(actor, method).remote(*args), timeout=timeout_s)


def read_datasource(source, num_tasks: int, max_retries: int, concurrency: int | None = None):
    """`ray.data.read_datasource` with read tasks that ask for no CPU and retry `max_retries` times,
    at most `concurrency` (default: all) at once.

    `max_retries` has no named parameter; Ray 2.60 deprecates `ray_remote_args` (for removal in
    2.64, outside the tested range) but it is the only way to set it, so its warning is muted here.
    """
    import ray.data

    # A read task serving thousands of partitions carries their references (a few hundred bytes
    # each); Ray Data's "large read function" warning about it would only alarm the user.
    warnings.filterwarnings("ignore", message=r"The serialized size of your read function named 'read_group'")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return ray.data.read_datasource(source, override_num_blocks=num_tasks, concurrency=concurrency or num_tasks,
                                        num_cpus=0, ray_remote_args={"max_retries": max_retries})


def train_v2_enabled() -> bool:
    """Ray Train v2 (the default since Ray 2.51; on 2.50 only with RAY_TRAIN_V2_ENABLED=1)."""
    from ray.train.v2._internal.constants import is_v2_enabled

    return bool(is_v2_enabled())


def train_configs() -> tuple[type, type, type]:
    """Ray Train v2's (RunConfig, FailureConfig, CheckpointConfig); loaded on first use (~1 s)."""
    from ray.train.v2.api.config import CheckpointConfig, FailureConfig, RunConfig

    return RunConfig, FailureConfig, CheckpointConfig


@functools.cache
def train_callback_class(mixin: type) -> type:
    """`mixin` combined with Ray Train v2's `UserCallback` (called in the Train controller).

    Made here, not at import, because `ray.train.UserCallback` exists only when v2 is on.
    """
    from ray.train.v2.api.callback import UserCallback

    return type(mixin.__name__.removesuffix("Mixin"), (mixin, UserCallback), {"__module__": mixin.__module__})


def block_metadata_of(table):
    """Ray Data's metadata of one block (rows, bytes, schema), made where the block is made, so
    that `materialized_from_blocks` needs no task per block (`ray.data.from_arrow_refs` runs
    one that asks for a CPU, which Spark's executors may all hold)."""
    from ray.data._internal.util import get_table_block_metadata_schema

    return get_table_block_metadata_schema(table)


@functools.cache
def _dataset_params() -> tuple[str, ...]:
    from ray.data.dataset import Dataset

    return tuple(inspect.signature(Dataset.__init__).parameters)[1:]


def materialized_from_blocks(blocks: list, metadata: list):
    """A `MaterializedDataset` over `blocks` (refs of Arrow tables, in order) with their
    `block_metadata_of` metadata: what `ray.data.from_arrow_refs` builds, without its metadata
    tasks. Its DataContext is a copy of the current one (use inside `data_context`). The
    Dataset's constructor moved from (ExecutionPlan, LogicalPlan) in Ray 2.50 to
    (LogicalPlan, DataContext, DatasetStats) in Ray 2.60."""
    from ray.data import DataContext
    from ray.data._internal.logical.interfaces import LogicalPlan
    from ray.data._internal.logical.operators.from_operators import FromArrow
    from ray.data._internal.stats import DatasetStats
    from ray.data.dataset import MaterializedDataset

    with warnings.catch_warnings():  # copying reads deprecated fields (use_polars, ...), which warn
        warnings.simplefilter("ignore", DeprecationWarning)
        context = DataContext.get_current().copy()
    stats = DatasetStats(metadata={"FromArrow": metadata}, parent=None)
    logical = LogicalPlan(FromArrow(blocks, metadata), context)
    if _dataset_params()[0] == "plan":  # Ray 2.50 (the type stubs are of the installed Ray)
        plan: Any = importlib.import_module("ray.data._internal.plan").ExecutionPlan(stats, context)
        old_shape: Any = MaterializedDataset
        return old_shape(plan, logical)
    return MaterializedDataset(logical, context, stats)


def materialized_blocks(ds) -> list[tuple[Any, int]] | None:
    """(block ref, rows) of a materialized Dataset's blocks in order; None for a lazy Dataset.

    `MaterializedDataset.iter_internal_ref_bundles` (a DeveloperAPI): the only way to the blocks'
    refs and row counts without fetching them.
    """
    from ray.data.dataset import MaterializedDataset

    if not isinstance(ds, MaterializedDataset):
        return None
    out = []
    for bundle in ds.iter_internal_ref_bundles():
        # RefBundle.block_refs / .metadata: its `blocks` changed from (ref, metadata) pairs to BlockEntry.
        for ref, meta in zip(bundle.block_refs, bundle.metadata, strict=True):
            out.append((ref, int(meta.num_rows or 0)))
    return out


def train_world() -> tuple[int, int, str]:
    """(world rank, world size, experiment name) of the Train worker this runs in."""
    import ray.train

    ctx = ray.train.get_context()
    return ctx.get_world_rank(), ctx.get_world_size(), ctx.get_experiment_name()


def train_run_id(run_context) -> str | None:
    """Ray Train's own id of a run, from the `TrainRunContext` its callbacks receive."""
    return getattr(run_context, "run_id", None)


def object_nodes(refs: list) -> list[set[str]]:
    """The nodes holding a copy of each object, in order (an empty set where Ray does not know).

    `ray.experimental.get_object_locations`: the only way to ask; bounded, and an answer that
    fails costs only placement, so it gives empty sets rather than an error.
    """
    from ray.experimental import get_object_locations

    try:
        found = get_object_locations(refs, timeout_ms=5000)
    except Exception:  # GCS slow or the API changed shape: place without it
        return [set() for _ in refs]
    return [set((found.get(ref) or {}).get("node_ids") or ()) for ref in refs]


def owned_object_count() -> int:
    """How many Ray objects this process holds references to (its core worker's reference
    table): flat over a long-running driver, or something keeps refs alive."""
    import ray._private.worker as worker

    return len(getattr(worker.global_worker, "core_worker").get_all_reference_counts())  # noqa: B009 (untyped)


def _stale_ray_data_entries() -> tuple[list, list]:
    """The entries `trim_ray_data_caches` drops: (remote functions of map operators, method tables
    of Ray Data's actor classes), each as (cache, key)."""
    functions: list = []
    tables: list = []
    try:
        from ray.data._internal import remote_fn

        functions = [(remote_fn.CACHED_FUNCTIONS, key) for key, fn in list(remote_fn.CACHED_FUNCTIONS.items())
                     if OPERATOR_ID_LABEL in (getattr(fn, "_default_options", {}).get("_labels") or {})]
    except (ImportError, AttributeError):  # another layout: check() names what is missing
        pass
    try:
        from ray.actor import _ActorClassMethodMetadata

        cache = _ActorClassMethodMetadata._cache
        tables = [(cache, key) for key in list(cache) if str(getattr(key, "module_name", "")).startswith("ray.data.")]
    except (ImportError, AttributeError):
        pass
    return functions, tables


def ray_data_leftovers() -> int:
    """How many entries Ray Data keeps in this process for Datasets that ran (see
    `trim_ray_data_caches`)."""
    functions, tables = _stale_ray_data_entries()
    return len(functions) + len(tables)


def trim_ray_data_caches() -> int:
    """Drop what Ray Data leaves behind in this process for every Dataset it ever ran, which is
    never looked up again: one remote function per map operator
    (`ray.data._internal.remote_fn.CACHED_FUNCTIONS`, keyed with the operator's own id label) and
    one method table per definition of its autoscaling coordinator's actor class, which it defines
    anew for every execution (`ray.actor._ActorClassMethodMetadata._cache`, cleared only when the
    driver disconnects). About 10-30 KiB per execution (Ray 2.50-2.60), so a driver serving
    conversions for weeks would grow without bound. Operators that are running hold their own
    reference; a later definition builds its entry again. Returns how many entries went."""
    functions, tables = _stale_ray_data_entries()
    for cache, key in functions + tables:
        cache.pop(key, None)
    return len(functions) + len(tables)


OPERATOR_ID_LABEL = "__data_operator_id"  # PhysicalOperator._OPERATOR_ID_LABEL_KEY


# Callbacks run at the start of every `ray.shutdown()`, before Ray disconnects. A thread of
# the driver that is inside a Ray call when `ray.shutdown()` runs in another thread makes Ray's
# core worker end the whole process with exit code 1 and no traceback ("The core worker has
# already been shutdown"): ftbridge's polling threads stop in these callbacks first. Ray has no
# shutdown hook of its own, so `ray.shutdown` (and the function Ray's other modules call,
# `ray._private.worker.shutdown`) is wrapped once; Ray's own atexit hook holds the original and
# is covered by atexit hooks registered after `ray.init`.
_SHUTDOWN_HOOKS: list = []
_SHUTDOWN_LOCK = threading.Lock()


def before_shutdown(callback) -> None:
    """Run `callback()` (no arguments; its errors are logged) at the start of each `ray.shutdown()`."""
    import ray
    import ray._private.worker as worker

    with _SHUTDOWN_LOCK:
        if not getattr(worker.shutdown, "_ftbridge_hooks", False):
            original = worker.shutdown

            @functools.wraps(original)
            def shutdown(*args, **kwargs):
                with _SHUTDOWN_LOCK:
                    hooks = list(_SHUTDOWN_HOOKS)
                for hook in hooks:
                    try:
                        hook()
                    except Exception:
                        logging.getLogger(__name__).exception("a hook before ray.shutdown() failed")
                return original(*args, **kwargs)

            shutdown._ftbridge_hooks = True  # type: ignore[attr-defined]
            worker.shutdown = shutdown
            ray.shutdown = shutdown
        if callback not in _SHUTDOWN_HOOKS:
            _SHUTDOWN_HOOKS.append(callback)


def check() -> list[str]:
    """Names this module relies on that the installed Ray lacks ([] when all are there)."""
    import ray.data
    from ray.data.block import BlockMetadata

    missing = [f"ray.data.{name}" for name in ("Datasource", "ReadTask", "read_datasource", "DataContext")
               if not hasattr(ray.data, name)]
    fields = {f.name for f in dataclasses.fields(BlockMetadata)}
    missing += [f"BlockMetadata.{name}" for name in ("num_rows", "size_bytes") if name not in fields]
    if hasattr(ray.data, "DataContext"):
        options = ray.data.DataContext.get_current().execution_options
        if not hasattr(options, "preserve_order"):
            missing.append("ExecutionOptions.preserve_order")
        for option in ("enable_progress_bars", "target_max_block_size"):
            if not hasattr(ray.data.DataContext.get_current(), option):
                missing.append(f"DataContext.{option}")
    import ray.experimental

    if not callable(getattr(ray.experimental, "get_object_locations", None)):
        missing.append("ray.experimental.get_object_locations")
    import ray._private.worker as worker

    if not callable(getattr(worker, "print_to_stdstream", None)):
        missing.append("ray._private.worker.print_to_stdstream")
    if not callable(getattr(worker, "shutdown", None)) or getattr(ray, "shutdown", None) is not worker.shutdown:
        missing.append("ray.shutdown is ray._private.worker.shutdown")
    from ray.data.dataset import MaterializedDataset

    if _dataset_params()[:2] not in (("plan", "logical_plan"), ("logical_plan", "context")):
        missing.append(f"Dataset.__init__{_dataset_params()} (known: (plan, logical_plan), (logical_plan, context, ...))")
    try:
        from ray.data._internal.logical.interfaces import LogicalPlan  # noqa: F401
        from ray.data._internal.logical.operators.from_operators import FromArrow  # noqa: F401
        from ray.data._internal.stats import DatasetStats  # noqa: F401
        from ray.data._internal.util import get_table_block_metadata_schema  # noqa: F401
    except ImportError as exc:
        missing.append(f"a Dataset from blocks: {exc}")
    if not callable(getattr(MaterializedDataset, "iter_internal_ref_bundles", None)):
        missing.append("MaterializedDataset.iter_internal_ref_bundles")
    from ray.data._internal.execution.interfaces import RefBundle

    missing += [f"RefBundle.{name}" for name in ("block_refs", "metadata") if not hasattr(RefBundle, name)]
    try:
        from ray.data._internal import remote_fn
        from ray.data._internal.execution.interfaces.physical_operator import PhysicalOperator
    except ImportError:
        missing.append("ray.data._internal.remote_fn, ray.data._internal.execution.interfaces.physical_operator")
    else:
        if not isinstance(getattr(remote_fn, "CACHED_FUNCTIONS", None), dict):
            missing.append("ray.data._internal.remote_fn.CACHED_FUNCTIONS")
        if getattr(PhysicalOperator, "_OPERATOR_ID_LABEL_KEY", None) != OPERATOR_ID_LABEL:
            missing.append(f"PhysicalOperator._OPERATOR_ID_LABEL_KEY == {OPERATOR_ID_LABEL!r}")
    from ray.actor import _ActorClassMethodMetadata

    if not isinstance(getattr(_ActorClassMethodMetadata, "_cache", None), dict):
        missing.append("ray.actor._ActorClassMethodMetadata._cache")
    core_worker_cls = getattr(getattr(ray, "_raylet", None), "CoreWorker", None)
    if not callable(getattr(core_worker_cls, "get_all_reference_counts", None)):
        missing.append("ray._raylet.CoreWorker.get_all_reference_counts")
    try:
        from ray.train.v2._internal.constants import is_v2_enabled  # noqa: F401
        from ray.train.v2.api.callback import UserCallback

        missing += [f"UserCallback.{m}" for m in ("after_report", "after_exception") if not hasattr(UserCallback, m)]
    except ImportError:
        missing.append("ray.train.v2 (UserCallback, is_v2_enabled)")
    return missing
