"""`fit_on_spark`: Spark DataFrames into a Ray Train trainer, recoverably, with the run in the lineage.

The estimator experience RayDP users know (`Estimator(...).fit_on_spark(train_df, eval_df)`),
on Ray Train's own trainers: each DataFrame becomes a recoverable conversion (streaming by
default, so the object store holds a window of blocks, not the dataset), the trainer gets them
as its datasets, failures restart from the last checkpoint, and the catalog records the run,
its inputs, its reports and failures.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import uuid
from typing import Any

import ray.data
from pyspark.sql import DataFrame as SparkDataFrame

from ftbridge.adapters import ray as ray_adapter
from ftbridge.common import foreign
from ftbridge.common.errors import ConfigurationError
from ftbridge.convert import conversion
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.writer import start_writer
from ftbridge.train.recorder import record_end, record_start, recorder
from ftbridge.train.resume import ResumableSource, installed

log = logging.getLogger(__name__)

CHECKPOINTS_KEPT = 2


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What `fit_on_spark` returns: Ray Train's `Result` and where the run is in the catalog."""

    run_id: str
    name: str
    result: Any                      # ray.train.Result
    conversions: dict[str, str]      # dataset name -> conversion id

    @property
    def checkpoint(self):
        return self.result.checkpoint

    @property
    def metrics(self) -> dict:
        return self.result.metrics


def _inputs(train_df, evaluate_df, datasets: dict | None) -> dict:
    named = {"train": train_df}
    if evaluate_df is not None:
        named["evaluation"] = evaluate_df
    for key, value in (datasets or {}).items():
        if key in named:
            raise ConfigurationError(f"fit_on_spark: dataset name {key!r} is given twice (train_df and evaluate_df "
                                     "are named 'train' and 'evaluation').")
        named[key] = value
    for key, value in named.items():
        if not isinstance(value, (SparkDataFrame, ray.data.Dataset)):
            raise ConfigurationError(f"fit_on_spark: dataset {key!r} is a {type(value).__name__}; give a Spark "
                                     "DataFrame or a ray.data.Dataset.")
    return named


def _run_config(run_config, name: str, storage_path: str | None, max_failures: int, callback):
    """The user's RunConfig (or a new one) with the run recorder, restarts and kept checkpoints."""
    RunConfig, FailureConfig, CheckpointConfig = ray_adapter.train_configs()
    if run_config is None:
        return RunConfig(name=name, storage_path=storage_path, failure_config=FailureConfig(max_failures=max_failures),
                         checkpoint_config=CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT), callbacks=[callback])
    changes: dict[str, Any] = {"callbacks": [*(run_config.callbacks or []), callback]}
    if run_config.failure_config is None or run_config.failure_config.max_failures == 0:
        changes["failure_config"] = FailureConfig(max_failures=max_failures)
    if not run_config.name:
        changes["name"] = name
    return dataclasses.replace(run_config, **changes)


def _convert(named: dict, run_name: str, streaming: bool, spill_dir, catalog: str) -> tuple[dict, dict, list]:
    """(datasets for the trainer, {name: conversion id}, ids converted here). A failure releases
    what was already converted."""
    datasets, inputs, made = {}, {}, []
    try:
        for key, value in named.items():
            if isinstance(value, SparkDataFrame):
                ds = conversion.create(value, spill_dir=spill_dir, catalog=catalog, name=f"{run_name}:{key}",
                                       materialize=not streaming)
                made.append(conversion.conversion_id(ds))
            else:
                ds = value
            datasets[key] = ds
            origin = conversion.REGISTRY.origin(ds)
            if origin is not None:
                inputs[key] = origin.conversion_id
    except BaseException:
        for cid in made:
            conversion.release(cid, catalog=catalog)
        raise
    return datasets, inputs, made


def _with_sources(loop, sources: dict[str, ResumableSource]):
    """The user's training loop, with `ftbridge.train.resumable(name)` knowing the run's datasets.

    Ray Train passes the config only to a loop that takes an argument, so the wrapper takes as many.
    """
    takes_config = len(inspect.signature(loop).parameters) > 0

    if takes_config:
        @functools.wraps(loop)
        def with_config(config):
            with installed(sources):
                return loop(config)
        return with_config

    @functools.wraps(loop)
    def without_config():
        with installed(sources):
            return loop()
    return without_config


def _resumable_sources(ds_map: dict, seed: int | None) -> dict[str, ResumableSource]:
    """A resumable source per recoverable dataset (the others have no stable row ids)."""
    out = {}
    for key, ds in ds_map.items():
        if conversion.REGISTRY.origin(ds) is not None:
            out[key] = ResumableSource.of(ds, key, seed=seed)
    return out


def fit_on_spark(trainer_cls, train_df, evaluate_df=None, *, datasets: dict | None = None, name: str | None = None,
                 streaming: bool = True, spill_dir=None, catalog=None, max_failures: int = 3,
                 storage_path: str | None = None, keep_data: bool = False, shuffle_seed: int | None = None,
                 **trainer_kwargs) -> FitResult:
    """`ftbridge.fit_on_spark` (see `ftbridge.api`)."""
    if not isinstance(trainer_cls, type):
        raise ConfigurationError(f"fit_on_spark takes a Ray Train trainer class (e.g. XGBoostTrainer), not "
                                 f"{type(trainer_cls).__name__}; pass its arguments as keywords.")
    if "datasets" in trainer_kwargs or max_failures < 0:
        raise ConfigurationError("fit_on_spark: give DataFrames as train_df / evaluate_df / datasets=, and "
                                 "max_failures >= 0.")
    if not ray_adapter.train_v2_enabled():
        raise ConfigurationError("fit_on_spark needs Ray Train v2 (the default since Ray 2.51). On Ray 2.50 set "
                                 "RAY_TRAIN_V2_ENABLED=1 in the environment before Python starts.")
    named = _inputs(train_df, evaluate_df, datasets)
    run_id = uuid.uuid4().hex
    cat = Catalog(catalog)
    run_config = trainer_kwargs.pop("run_config", None)
    run_name = name or (run_config.name if run_config is not None and run_config.name else None) \
        or f"ftbridge-{trainer_cls.__name__.lower()}-{run_id[:8]}"
    writer = start_writer(cat)
    ds_map, inputs, made = _convert(named, run_name, streaming, spill_dir, cat.path)
    config = _run_config(run_config, run_name, storage_path, max_failures, recorder(run_id, cat.path))
    loop = trainer_kwargs.get("train_loop_per_worker")
    if callable(loop):
        trainer_kwargs["train_loop_per_worker"] = _with_sources(loop, _resumable_sources(ds_map, shuffle_seed))
    record_start(writer, run_id, config.name, trainer_cls.__name__, config.storage_path, inputs)
    log.info("training run %s (%s): %s on %s", config.name, run_id, trainer_cls.__name__, inputs)
    try:
        result = trainer_cls(datasets=ds_map, run_config=config, **trainer_kwargs).fit()
    except BaseException as exc:
        error = foreign.training_failed(exc, run_id, config.name, config.storage_path)
        record_end(writer, run_id, getattr(error, "cause", None) or str(exc))
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise error from exc
    record_end(writer, run_id)
    if not keep_data:
        for cid in made:
            conversion.release(cid, catalog=cat.path)
    return FitResult(run_id, config.name, result, inputs)
