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
import functools
import dataclasses
import inspect
import threading
import warnings

TESTED = ("2.50", "2.60")
_CONTEXT_LOCK = threading.Lock()


def ray_version() -> str:
    import ray

    return ray.__version__


def block_metadata(num_rows: int, size_bytes: int):
    """A `ray.data.block.BlockMetadata` with only the fields this Ray release has."""
    from ray.data.block import BlockMetadata

    known = {f.name for f in dataclasses.fields(BlockMetadata)}
    values = {"num_rows": num_rows, "size_bytes": size_bytes, "input_files": None, "exec_stats": None,
              "schema": None}
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


def call_named_actor(gcs_address: str, namespace: str, name: str, method: str, args: tuple, timeout_s: float):
    """Call a named actor's method from a process outside the Ray job (a Spark Python worker),
    joining the cluster as a driver on first use. Ray is imported only here, so such processes
    pay for it only when they need it."""
    import ray

    if not ray.is_initialized():
        ray.init(address=gcs_address, namespace=namespace, log_to_driver=False, logging_level="ERROR")
    actor = ray.get_actor(name, namespace=namespace)
    return ray.get(getattr(actor, method).remote(*args), timeout=timeout_s)


def read_datasource(source, num_tasks: int, max_retries: int):
    """`ray.data.read_datasource` with read tasks that ask for no CPU and retry `max_retries` times.

    `max_retries` has no named parameter; Ray 2.60 deprecates `ray_remote_args` (for removal in
    2.64, outside the tested range) but it is the only way to set it, so its warning is muted here.
    """
    import ray.data

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return ray.data.read_datasource(source, override_num_blocks=num_tasks, concurrency=num_tasks,
                                        num_cpus=0, ray_remote_args={"max_retries": max_retries})


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
    return missing
