"""The catalog's vocabulary: event kinds, partition states, conversion statuses.

They are `StrEnum`s, so they are stored in DuckDB and compared with rows read back as the
plain strings they equal.
"""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    """What happened to a conversion or one of its partitions."""

    CREATED = "created"                            # conversion spilled and recorded
    SPILL_RETRIED = "spill_retried"                # Spark ran a task of the spill job again (executor lost, task failed)
    READ = "read"                                  # a read task served a partition from its spill file
    OBJECT_RECONSTRUCTED = "object_reconstructed"  # Ray re-ran a read task for a block it lost
    SPILL_MISSING = "spill_missing"                # a spill file was not found
    CHECKSUM_MISMATCH = "checksum_mismatch"        # a spill file's bytes differ from the recorded checksum
    REBUILT_FROM_SPARK = "rebuilt_from_spark"      # a live Spark session rebuilt the partition
    REBUILT_FROM_RECIPE = "rebuilt_from_recipe"    # a recipe in a fresh Spark session rebuilt it
    REBUILT_FROM_RAY = "rebuilt_from_ray"          # a Ray -> Spark block staged again from its Ray object
    REBUILD_REFUSED = "rebuild_refused"            # the rebuilt data differs (non-deterministic plan)
    UNRECOVERABLE = "unrecoverable"                # nothing could rebuild it
    VERIFY_OK = "verify_ok"
    VERIFY_FAILED = "verify_failed"
    RELEASED = "released"
    REUSED = "reused"                              # the same plan over the same files: its files served again


class PartitionState(StrEnum):
    """A partition's spill file as the catalog last knew it."""

    HEALTHY = "healthy"
    MISSING = "missing"      # not found (rebuildable while Spark or a recipe can rebuild it)
    CORRUPT = "corrupt"      # wrong size or checksum
    LOST = "lost"            # nothing could rebuild it
    RELEASED = "released"    # deleted on purpose


BAD_STATES = (PartitionState.MISSING, PartitionState.CORRUPT, PartitionState.LOST)


class Direction(StrEnum):
    SPARK_TO_RAY = "spark_to_ray"
    RAY_TO_SPARK = "ray_to_spark"


class ConversionStatus(StrEnum):
    ACTIVE = "active"
    RELEASED = "released"


class RunStatus(StrEnum):
    """A training run as the catalog last knew it."""

    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class RunEventKind(StrEnum):
    """What happened to a training run (its timeline; recovery events of its inputs are in `events`)."""

    STARTED = "started"              # the driver started the trainer
    REPORT = "report"                # every worker reported (ray.train.report): an epoch or step done
    WORKER_FAILED = "worker_failed"  # one or more Train workers raised or died; Ray Train restarts the group
    RESUMED = "resumed"              # a restarted attempt went on mid-epoch from a checkpoint's position
    FINISHED = "finished"
    FAILED = "failed"
