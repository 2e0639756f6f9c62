"""Training runs in the lineage catalog.

The driver records the run (its inputs, start and end); the `RunRecorder` callback, which Ray
Train calls in its controller process, records every report (an epoch or step every worker
finished, with its checkpoint) and every worker failure. Both write through the catalog's
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

import ray

from ftbridge.adapters import ray as ray_adapter
from ftbridge.common import foreign
from ftbridge.common.config import RAY_NAMESPACE
from ftbridge.lineage.catalog import now
from ftbridge.lineage.kinds import RunEventKind, RunStatus
from ftbridge.lineage.rows import RunEventRow, RunRow, RunUpdate, new_run_event
from ftbridge.lineage.writer import CatalogClient, actor_name

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


class RunRecorderMixin:
    """Ray Train v2 callback: reports and worker failures of one run → the catalog writer.

    Use `recorder(run_id, catalog_path)` to get an instance (the class is completed with Ray
    Train's `UserCallback` base when v2 is on). Recording never fails the training: a catalog
    outage is logged and the run goes on.
    """

    def __init__(self, run_id: str, catalog_path: str) -> None:
        self.run_id = run_id
        self.catalog_path = catalog_path
        self._named = False
        self._writer: CatalogClient | None = None  # in the background: training never waits on the catalog

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_writer": None}  # an actor handle is looked up where it is used

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

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        path = getattr(checkpoint, "path", None) if checkpoint is not None else None
        ev = new_run_event(self.run_id, RunEventKind.REPORT, epoch=_epoch(metrics), checkpoint=path,
                           detail=_metrics_detail(metrics))
        self._send(self._ids(run_context), [ev])

    def after_exception(self, run_context, worker_exceptions: dict) -> None:
        causes = "; ".join(f"rank {rank}: {type(foreign.root_cause(exc)).__name__}: "
                           f"{foreign.first_line(foreign.root_cause(exc), 200)}"
                           for rank, exc in sorted(worker_exceptions.items()))
        ev = new_run_event(self.run_id, RunEventKind.WORKER_FAILED, detail=causes)
        self._send(self._ids(run_context), [ev])


def recorder(run_id: str, catalog_path: str):
    """A `RunRecorder` callback for Ray Train's `RunConfig(callbacks=[...])`."""
    return ray_adapter.train_callback_class(RunRecorderMixin)(run_id, catalog_path)


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
