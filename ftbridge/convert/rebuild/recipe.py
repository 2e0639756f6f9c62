"""Durable rebuild recipes: "package.module:function" that rebuilds a DataFrame from scratch.

A recipe is recorded with its conversion. When the driver that made the conversion is
gone, a `RecipeRebuilder` starts (or reuses) Spark on the current Ray cluster, calls the
recipe, and re-runs only the missing partitions; each rebuilt partition must match the
catalog's checksum, or it is refused.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading

from pyspark import StorageLevel

from ftbridge.cluster import session as cluster
from ftbridge.common.config import settings
from ftbridge.common.errors import ConfigurationError, ConversionError
from ftbridge.convert.rebuild.spark import SparkRebuilder
from ftbridge.convert.spill.batches import ArrowBatches, BatchSettings
from ftbridge.convert.spill.target import SpillTarget
from ftbridge.convert.types import check_supported, dataframe_schema, schema_from_b64
from ftbridge.lineage.kinds import EventKind

log = logging.getLogger(__name__)

_RECIPE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def load_recipe(recipe: str):
    """Import and return the recipe callable; ConfigurationError if it cannot be found."""
    if not isinstance(recipe, str) or not _RECIPE.match(recipe):
        raise ConfigurationError(f"recipe must look like 'package.module:function', got {recipe!r}")
    module_name, func_name = recipe.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"recipe module {module_name!r} cannot be imported: {exc}. Make it importable "
                                 "(installed, or on PYTHONPATH) where recovery runs.", recipe=recipe) from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigurationError(f"recipe {recipe!r}: {module_name} has no callable {func_name!r}", recipe=recipe)
    return func


def check_recipe(recipe: str) -> None:
    load_recipe(recipe)


def recovery_spark():
    """The running Spark-on-Ray session, or a small one started for recovery (FTBRIDGE_RECOVER_*)."""
    running = cluster.current_or_none()
    if running is not None:
        return running.spark, False
    cfg = settings()
    spark = cluster.init_spark("ftbridge-recover", num_executors=cfg.recover_executors,
                               executor_cores=cfg.recover_executor_cores,
                               executor_memory=cfg.recover_executor_memory)
    return spark, True


class RecipeRebuilder:
    """Rebuilds partitions of one recorded conversion by running its recipe."""

    def __init__(self, conv: dict, parts: list[dict], catalog, writer) -> None:
        self.conv, self.parts, self.catalog, self.writer = conv, parts, catalog, writer
        self.live: SparkRebuilder | None = None
        self.started_spark = False
        self.lock = threading.Lock()

    def _ensure(self) -> SparkRebuilder:
        with self.lock:
            if self.live is not None:
                return self.live
            cid = self.conv["conversion_id"]
            func = load_recipe(self.conv["recipe"])
            spark, self.started_spark = recovery_spark()
            df = func(spark)
            schema = schema_from_b64(self.conv["schema_b64"])
            check_supported(dataframe_schema(df))
            # The recorded batch settings make the rebuilt bytes comparable with the originals.
            settings = BatchSettings.from_json(self.conv.get("spill_format"))
            batches = ArrowBatches(df, StorageLevel.MEMORY_AND_DISK, settings)
            if not batches.schema.equals(schema):
                batches.unpersist()
                raise ConversionError(
                    f"recipe {self.conv['recipe']} now gives schema {batches.schema}, but conversion {cid} "
                    f"recorded {schema}; refusing to rebuild from it.", conversion_id=cid)
            n = batches.num_partitions
            if n != self.conv["num_partitions"]:
                batches.unpersist()
                raise ConversionError(
                    f"recipe {self.conv['recipe']} gives {n} partitions, conversion {cid} recorded "
                    f"{self.conv['num_partitions']}; partitions cannot be matched, refusing to rebuild.",
                    conversion_id=cid)
            target = SpillTarget.recorded(self.conv)
            self.live = SparkRebuilder(cid, batches, target, self.catalog, self.writer, self.parts,
                                       bool(self.conv["allow_nondeterministic"]),
                                       rebuilt_kind=EventKind.REBUILT_FROM_RECIPE)
            return self.live

    def rebuild(self, partition_id: int, why: str, failed_path: str = "") -> dict:
        return self._ensure().rebuild(partition_id, why, failed_path)
