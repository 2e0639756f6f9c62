"""What this process knows about its conversions: which it can rebuild, and which Dataset is which.

One `Registry` per process (`conversion.REGISTRY`). It owns the rebuild dispatcher (started on
first use), the rebuilder of every conversion this process made or reopened with a recipe, and
a weak map from the Datasets it returned to their conversion and catalog, so ftbridge never
pins attributes on Ray's objects. A Spark-on-Ray session that stops tells the registry, which
releases (or forgets) the conversions made with it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from ftbridge.adapters import ray as ray_adapter
from ftbridge.convert.rebuild.service import RebuildDispatcher
from ftbridge.convert.rebuild.spark import SparkRebuilder
from ftbridge.convert.to_spark.restage import start_restager
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.writer import end_writers, writer_paths


@dataclass(frozen=True)
class DatasetOrigin:
    """The conversion a Dataset reads and the catalog that records it."""

    conversion_id: str
    catalog: str


@dataclass(frozen=True)
class Staging:
    """A Ray -> Spark conversion of this process: its catalog and writer."""

    catalog: Catalog
    writer: Any  # the catalog writer's actor handle


class Registry:
    """Live conversions of this process and the Datasets (and DataFrames) returned for them."""

    def __init__(self, release: Callable[[str, str], object]) -> None:
        """`release(conversion_id, catalog_path)` frees a conversion when its Spark session stops."""
        self._release = release
        self.rebuilders: dict[str, SparkRebuilder] = {}
        self.stagings: dict[str, Staging] = {}
        self._datasets: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._dispatcher: RebuildDispatcher | None = None
        self._restager: tuple | None = None   # (actor, name): restages Ray -> Spark blocks
        # While a Spark session that made conversions is up, the rebuild service stays up between
        # conversions (starting it costs ~0.2 s); its stop hook ends it.
        self._spark_live = False
        # A Spark session ftbridge did not start has no stop hook: once it made a conversion, the
        # service stays up until the process ends (its actor lives on the driver's node and ends
        # with it), instead of starting again for each conversion after the last was released.
        self._foreign_live = False
        self._lock = threading.Lock()

    def service_name(self) -> str:
        """The rebuild service's actor name (the service starts on first use)."""
        with self._lock:
            return self._dispatcher_locked().name

    def _register(self, conversion_id: str, handler: Callable[[int, str, str], dict]) -> str:
        with self._lock:
            dispatcher = self._dispatcher_locked()
            dispatcher.register(conversion_id, handler)
            return dispatcher.name

    def _dispatcher_locked(self) -> RebuildDispatcher:
        if self._dispatcher is None:
            self._dispatcher = RebuildDispatcher()
            ray_adapter.before_shutdown(self._on_ray_shutdown)
        return self._dispatcher

    def _on_ray_shutdown(self) -> None:
        """`ray.shutdown()` was called (a user's program ends Ray itself, e.g. before
        `shutdown_ray_cluster`): the rebuild service's polling thread stops while Ray is still up,
        since a Ray call of that thread during the shutdown would end the whole process. The
        service and the restager go with Ray; the next conversion starts them again."""
        with self._lock:
            dispatcher, self._dispatcher = self._dispatcher, None
            self._restager = None
            self._foreign_live = False
        if dispatcher is not None:
            dispatcher.stop("ray.shutdown() was called")

    def add(self, rebuilder: SparkRebuilder) -> str:
        """Serve rebuilds of a conversion made by this process; returns the service name."""
        self.rebuilders[rebuilder.conversion_id] = rebuilder
        name = self._register(rebuilder.conversion_id, rebuilder.rebuild)
        self._hook(rebuilder.spark_owner)
        if rebuilder.spark_owner is None:
            self._foreign_live = True
        return name

    def add_staging(self, conversion_id: str, block_refs: list, target, partitions: list[dict], catalog, writer,
                    spark_owner) -> str:
        """A Ray -> Spark conversion whose DataFrame lives in `spark_owner`'s session; its blocks go to
        the Restager (started on first use). Returns the Restager's actor name."""
        with self._lock:
            if self._restager is None:
                self._restager = start_restager()
            actor, name = self._restager
        actor.add.remote(conversion_id, [block_refs], target, partitions, writer)
        self.stagings[conversion_id] = Staging(catalog, writer)
        self._hook(spark_owner)
        return name

    def forget_staging(self, conversion_id: str) -> Staging | None:
        staging = self.stagings.pop(conversion_id, None)
        if staging is not None and self._restager is not None:
            self._restager[0].remove.remote(conversion_id)  # its blocks may go now
        return staging

    def serve_session(self, owner) -> str:
        """Start the rebuild service now, for the Spark session `owner` (up until that session stops)."""
        name = self.service_name()
        self._hook(owner)
        return name

    def _hook(self, owner) -> None:
        if owner is not None:
            self._spark_live = True
            if self._on_spark_stop not in owner.stop_hooks:
                owner.stop_hooks.append(self._on_spark_stop)

    def serve(self, conversion_id: str, handler: Callable[[int, str, str], dict]) -> str:
        """Serve rebuilds of a conversion this process did not make (e.g. by its recipe)."""
        return self._register(conversion_id, handler)

    def forget(self, conversion_id: str) -> SparkRebuilder | None:
        """Stop serving a conversion; the dispatcher (a thread polling Ray) ends with the last one,
        or with the Spark session when one is up (with the process, for a session ftbridge did
        not start)."""
        rebuilder = self.rebuilders.pop(conversion_id, None)
        with self._lock:
            if self._dispatcher is not None:
                self._dispatcher.unregister(conversion_id)
                if not self._dispatcher.handlers and not self._spark_live and not self._foreign_live:
                    self._dispatcher.stop("every conversion it served was released")
                    self._dispatcher = None
        return rebuilder

    def remember(self, ds, conversion_id: str, catalog: str) -> None:
        self._datasets[ds] = DatasetOrigin(conversion_id, catalog)

    def origin(self, ds) -> DatasetOrigin | None:
        try:
            return self._datasets.get(ds)
        except TypeError:  # not weak-referenceable: certainly not one of ours
            return None

    def _on_spark_stop(self, cleanup_data: bool) -> None:
        for conversion_id, rebuilder in list(self.rebuilders.items()):
            if cleanup_data:
                self._release(conversion_id, rebuilder.catalog.path)
            else:
                self.forget(conversion_id)
        for conversion_id, staging in list(self.stagings.items()):  # their DataFrames end with Spark
            if cleanup_data:
                self._release(conversion_id, staging.catalog.path)
            else:
                self.forget_staging(conversion_id)
        with self._lock:
            self._spark_live = False
            if self._dispatcher is not None:
                self._dispatcher.stop()
                self._dispatcher = None
            if self._restager is not None:
                try:
                    ray.kill(self._restager[0], no_restart=True)
                except Exception:  # already gone with the job
                    pass
                self._restager = None
        self.end_unused_writers()

    def end_unused_writers(self, keep: frozenset[str] | set[str] = frozenset()) -> list[str]:
        """End the catalog writers this process owns whose catalogs no live Dataset, rebuilder or
        staging uses (and that are not in `keep`); returns those it ended."""
        used = self.catalogs_in_use() | keep
        return end_writers([path for path in writer_paths() if path not in used])

    def catalogs_in_use(self) -> set[str]:
        """Catalogs that a live Dataset, rebuilder or staging of this process still records into."""
        used = {origin.catalog for origin in list(self._datasets.values())}
        used |= {r.catalog.path for r in self.rebuilders.values()}
        return used | {s.catalog.path for s in self.stagings.values()}
