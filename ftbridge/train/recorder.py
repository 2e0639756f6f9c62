"""Training runs in the lineage catalog.

The driver records the run (its inputs, start and end); the `RunRecorder` callback, which Ray
Train calls in its controller process, records every report (an epoch or step every worker
finished, with its checkpoint and, from the resumable iterator, how far into its epoch it was),
every resume mid-epoch and every worker failure. Both write through the catalog's
single writer actor, so nothing opens the DuckDB file but that actor. Recovery events of the
run's conversions (rebuilds, re-reads) are already in the catalog; the audit links them to the
run by conversion and time.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from typing import Any

import ray

from ftbridge.adapters import ray as ray_adapter
from ftbridge.common import foreign
from ftbridge.common.config import RAY_NAMESPACE
from ftbridge.common.errors import ConfigurationError
from ftbridge.convert import conversion
from ftbridge.lineage.catalog import Catalog, now
from ftbridge.lineage.kinds import RunEventKind, RunStatus
from ftbridge.lineage.rows import RunEventRow, RunRow, RunUpdate, new_run_event
from ftbridge.lineage.writer import CatalogClient, actor_name, start_writer
from ftbridge.train.resume import METRICS_KEY

log = logging.getLogger(__name__)

METRIC_DETAIL_LIMIT = 300


def _metrics_detail(metrics: list[dict]) -> str:
    """Rank 0's scalar metrics, short, for the timeline."""
    first = metrics[0] if metrics else {}
    scalars = {k: v for k, v in first.items() if isinstance(v, (int, float, str, bool)) and not k.startswith("_")}
    return json.dumps(scalars, default=str)[:METRIC_DETAIL_LIMIT]


def _epoch(metrics: list[dict]) -> int | None:
    value = (metrics[0] if metrics else {}).get("epoch")
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _position(metrics: list[dict]) -> tuple[float | None, list[tuple[str, dict]]]:
    """(the reported share of the epoch, [(dataset, resume)]) from rank 0's `_ftbridge` metrics."""
    summaries = (metrics[0] if metrics else {}).get(METRICS_KEY)
    if not isinstance(summaries, dict) or not summaries:
        return None, []
    main = summaries.get("train") or summaries[sorted(summaries)[0]]
    resumes = [(name, s["resumed"]) for name, s in sorted(summaries.items())
               if isinstance(s, dict) and isinstance(s.get("resumed"), dict)]
    return main.get("position") if isinstance(main, dict) else None, resumes


class RunRecorderMixin:
    """Ray Train v2 callback: reports, mid-epoch positions, resumes and worker failures of one run.

    `ftbridge.train.RunRecorder(name, inputs={"train": ds}, catalog=...)` records a trainer built
    by hand: it records the run's start when made; put it in `RunConfig(callbacks=[...])`, then
    `recorder.fit(trainer)` (or `with recorder: trainer.fit()`) records the end. Recording never
    fails the training: a catalog outage is logged and the run goes on.
    """

    def __init__(self, name: str | None = None, *, inputs: dict | None = None, catalog=None,
                 trainer: str | None = None) -> None:
        cat = Catalog(catalog)
        run_id = uuid.uuid4().hex
        self._setup(run_id, cat.path)
        self.name = name or f"ftbridge-run-{run_id[:8]}"
        writer = start_writer(cat)
        self._driver_writer = writer
        named = {}
        for key, value in (inputs or {}).items():
            origin = conversion.REGISTRY.origin(value) if not isinstance(value, str) else None
            if origin is None and not isinstance(value, str):
                raise ConfigurationError(f"RunRecorder: input {key!r} is not a recoverable Dataset (from "
                                         "ftbridge.from_spark_recoverable / open_recoverable) nor a conversion id.")
            named[key] = origin.conversion_id if origin is not None else value
        record_start(writer, run_id, self.name, trainer or "", None, named)

    _driver_writer: CatalogClient | None

    def _setup(self, run_id: str, catalog_path: str) -> None:
        self.run_id = run_id
        self.catalog_path = catalog_path
        self._named = False
        self._writer: CatalogClient | None = None  # in the background: training never waits on the catalog
        self._driver_writer = None
        self._checkpoint_at: float | None = None   # the last report with a checkpoint (controller's clock)

    def __getstate__(self) -> dict:
        # Actor handles are looked up where they are used.
        return {**self.__dict__, "_writer": None, "_driver_writer": None}

    # -- on the driver: the run's end, for trainers built by hand -----------------------------
    def fit(self, trainer):
        """`trainer.fit()`, with the run's end (finished, or failed with its cause) recorded."""
        with self:
            return trainer.fit()

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if self._driver_writer is None:
            raise ConfigurationError("RunRecorder: only the recorder made on the driver records the run's end")
        record_end(self._driver_writer, self.run_id,
                   None if exc is None else f"{type(foreign.root_cause(exc)).__name__}: "
                                           f"{foreign.first_line(foreign.root_cause(exc), 300)}")

    # -- in Ray Train's controller --------------------------------------------------------------
    def _send(self, update: RunUpdate, events: list[RunEventRow]) -> None:
        if self._writer is None:
            try:
                handle = ray.get_actor(actor_name(self.catalog_path), namespace=RAY_NAMESPACE)
            except ValueError as exc:  # the writer is gone (its driver exited): keep training
                log.warning("run %s: catalog writer not found, event not recorded: %s", self.run_id, exc)
                return
            self._writer = CatalogClient.of_actor(handle).in_background()
        self._writer.buffer_run_events(self.run_id, update, events)

    def _ids(self, run_context) -> RunUpdate:
        if self._named:
            return RunUpdate()
        self._named = True
        return RunUpdate(ray_run_id=ray_adapter.train_run_id(run_context))

    def _resumes(self, resumes: list[tuple[str, dict]]) -> list[RunEventRow]:
        out = []
        for name, r in resumes:
            at = float(r.get("at") or time.time())
            lost = round(at - self._checkpoint_at, 3) if self._checkpoint_at is not None else None
            pct = 100 * float(r.get("position") or 0.0)
            what = f"{name}: resumed epoch {r.get('epoch')} at {pct:.0f} %"
            out.append(new_run_event(self.run_id, RunEventKind.RESUMED, at, epoch=r.get("epoch"),
                                     detail=what + (f": {lost:.1f} s lost" if lost is not None else ""),
                                     position=r.get("position"), lost_s=lost))
        return out

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        path = getattr(checkpoint, "path", None) if checkpoint is not None else None
        position, resumes = _position(metrics)
        events = self._resumes(resumes)
        events.append(new_run_event(self.run_id, RunEventKind.REPORT, epoch=_epoch(metrics), checkpoint=path,
                                    detail=_metrics_detail(metrics), position=position))
        if path is not None:
            self._checkpoint_at = time.time()
        self._send(self._ids(run_context), events)

    def after_exception(self, run_context, worker_exceptions: dict) -> None:
        causes = "; ".join(f"rank {rank}: {type(foreign.root_cause(exc)).__name__}: "
                           f"{foreign.first_line(foreign.root_cause(exc), 200)}"
                           for rank, exc in sorted(worker_exceptions.items()))
        ev = new_run_event(self.run_id, RunEventKind.WORKER_FAILED, detail=causes)
        self._send(self._ids(run_context), [ev])


def run_recorder_class() -> type:
    """`RunRecorder`: the mixin on Ray Train v2's `UserCallback` (one class per process)."""
    global _CLASS
    if _CLASS is None:
        if not ray_adapter.train_v2_enabled():
            raise ConfigurationError("RunRecorder needs Ray Train v2 (the default since Ray 2.51). On Ray 2.50 set "
                                     "RAY_TRAIN_V2_ENABLED=1 in the environment before Python starts.")
        _CLASS = ray_adapter.train_callback_class(RunRecorderMixin)
    return _CLASS


_CLASS: type | None = None


def recorder(run_id: str, catalog_path: str):
    """The callback `fit_on_spark` adds (it records the run's start and end itself)."""
    cls: Any = run_recorder_class()
    rec = cls.__new__(cls)
    rec._setup(run_id, catalog_path)
    return rec


def record_start(writer: CatalogClient, run_id: str, name: str, trainer: str, storage_path: str | None,
                 inputs: dict[str, str]) -> None:
    """The run's row, its inputs ({dataset name: conversion id}) and its STARTED event."""
    run = RunRow(run_id=run_id, name=name, trainer=trainer, started_at=now(), status=RunStatus.RUNNING,
                 storage_path=storage_path, driver_host=socket.gethostname(), driver_pid=os.getpid())
    writer.record_run(run, inputs, [new_run_event(run_id, RunEventKind.STARTED,
                                                  detail=", ".join(f"{k}={v[:12]}" for k, v in inputs.items()))])


def record_end(writer: CatalogClient, run_id: str, error: str | None = None) -> None:
    """FINISHED (or FAILED with `error`): the run's status and end time."""
    kind, status = (RunEventKind.FAILED, RunStatus.FAILED) if error else (RunEventKind.FINISHED, RunStatus.FINISHED)
    at = time.time()
    update = RunUpdate(status=status, finished_at=now(), error=error)
    try:
        writer.flush()  # the controller's last reports first
        writer.record_run_events(run_id, update, [new_run_event(run_id, kind, at, detail=error or "")])
    except Exception as exc:  # the training result matters more than its record
        log.warning("run %s: could not record its end in the catalog: %s", run_id, exc)
