"""The typed reports of the operations API (`ftbridge.audit`, `show`, `verify`, `recover`, `gc`).

Each report is a frozen dataclass; `to_dict()` is its JSON document (what the CLI's `--json`
prints: one schema for Python callers and scripts), `to_json()` the same as text. Datetimes
become ISO 8601 strings, `Health` its lower-case name, enums their value. The field names are the
JSON keys, written here once.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from enum import Enum, IntEnum
from typing import Any, ClassVar


class Health(IntEnum):
    """A conversion's verdict, and the exit code of `ftbridge verify` and `ftbridge recover`."""

    HEALTHY = 0      # every checked partition is healthy
    DEGRADED = 1     # files missing or corrupt, and a recipe or the live driver can rebuild them
    DATA_LOST = 2    # files missing or corrupt that nothing can rebuild


def _plain(value: Any) -> Any:
    if isinstance(value, Health):
        return value.name.lower()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Report:
    """What every report has: its JSON document."""

    # Read-only properties that belong in the JSON document too.
    computed: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types."""
        out = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            out[field.name] = value.to_dict() if isinstance(value, Report) else _plain(
                [v.to_dict() if isinstance(v, Report) else v for v in value] if isinstance(value, list) else value)
        for name in self.computed:
            out[name] = _plain(getattr(self, name))
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


@dataclasses.dataclass(frozen=True)
class PartitionHealth(Report):
    """How many partitions are in each state (degraded: missing or corrupt, still rebuildable)."""

    healthy: int = 0
    degraded: int = 0
    lost: int = 0
    released: int = 0


@dataclasses.dataclass(frozen=True)
class RecoveryTimes(Report):
    """Seconds from detecting a loss to the end of its rebuild, over a conversion's recoveries."""

    median: float | None
    worst: float | None


@dataclasses.dataclass(frozen=True)
class ConversionSummary(Report):
    """One conversion in the audit."""

    id: str
    name: str | None
    created: str
    status: str
    direction: str             # "spark_to_ray" or "ray_to_spark"
    rows: int
    bytes: int
    partitions: PartitionHealth
    recovery_events: int       # detections, rebuilds, reconstructions, refusals and losses
    rebuilt: int
    reconstructed: int         # blocks Ray rebuilt by re-running their read task
    time_to_recover_s: RecoveryTimes
    recipe: str | None
    spill_root: str


@dataclasses.dataclass(frozen=True)
class RunSummary(Report):
    """One training run (`fit_on_spark`) in the audit."""

    id: str
    name: str | None
    ray_run_id: str | None
    trainer: str | None
    status: str                # running, finished or failed
    started: str
    finished: str | None
    seconds: float | None
    inputs: dict[str, str]     # dataset name -> conversion id
    epochs_completed: int
    reports: int
    checkpoints: int
    worker_failures: int
    restarts: int
    attempts: int
    resumes: int               # restarts that went on mid-epoch from a checkpoint's position
    recovery_events: int       # in the run's inputs while it ran
    rebuilt: int
    reconstructed: int
    time_lost_s: float         # what the failures cost (work redone, restarts)
    error: str | None


@dataclasses.dataclass(frozen=True)
class AuditReport(Report):
    """Every conversion and training run of a catalog (`ftbridge.audit()`, `ftbridge audit --json`)."""

    catalog: str
    conversions: list[ConversionSummary]
    runs: list[RunSummary]


@dataclasses.dataclass(frozen=True)
class TimelineEntry(Report):
    """A run's own event, or a recovery event in one of its inputs while it ran."""

    at: datetime
    what: str
    epoch: int | None
    conversion: str | None
    partition: int | None
    detail: str


@dataclasses.dataclass(frozen=True)
class RunDetail(Report):
    """`ftbridge.show(run)`: a training run and its timeline."""

    run: RunSummary
    timeline: list[TimelineEntry]


@dataclasses.dataclass(frozen=True)
class SchemaField(Report):
    name: str
    type: str


@dataclasses.dataclass(frozen=True)
class ConversionDetail(Report):
    """`ftbridge.show(conversion)`: the conversion's catalog row, its schema, partitions and events.

    `conversion`, each of `partitions` and each of `events` are rows of the catalog's tables of
    the same names, column name to value (the columns: `ftbridge/lineage/schema.py`).
    """

    conversion: dict[str, Any]
    schema: list[SchemaField]
    partitions: list[dict[str, Any]]
    events: list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class PartitionCheck(Report):
    """One partition's spill file as `verify` found it."""

    partition: int
    state: str                 # healthy, missing, corrupt, lost or released
    detail: str
    path: str
    node_id: str | None


@dataclasses.dataclass(frozen=True)
class VerifyReport(Report):
    """`ftbridge.verify(...)`: one conversion's files checked (and the results recorded)."""

    computed: ClassVar[tuple[str, ...]] = ("exit_code",)

    id: str
    name: str | None
    status: str
    health: Health
    healthy: int
    bad: int
    rebuildable: bool          # a recipe is recorded, or the driver that made it still runs here
    partitions: list[PartitionCheck]

    @property
    def exit_code(self) -> int:
        return int(self.health)


@dataclasses.dataclass(frozen=True)
class RebuiltPartition(Report):
    partition: int
    path: str
    node_id: str | None


@dataclasses.dataclass(frozen=True)
class FailedPartition(Report):
    partition: int
    error: str


@dataclasses.dataclass(frozen=True)
class RecoverReport(Report):
    """`ftbridge.recover(...)`: what verify found, then what the recipe rebuilt and what it could not."""

    computed: ClassVar[tuple[str, ...]] = ("health", "exit_code")

    id: str
    name: str | None
    verified: VerifyReport
    rebuilt: list[RebuiltPartition]
    failed: list[FailedPartition]

    @property
    def health(self) -> Health:
        """After the rebuilds: healthy unless a partition could not be rebuilt."""
        return Health.DATA_LOST if self.failed else Health.HEALTHY

    @property
    def exit_code(self) -> int:
        return int(self.health)


@dataclasses.dataclass(frozen=True)
class GcConversion(Report):
    """What gc freed (or would free) of one conversion."""

    id: str
    reason: str                # released, expired or superseded copies
    files: int
    bytes: int
    by_host: dict[str, int]
    waiting: int               # files on hosts that were down or out of reach: the next gc tries again


@dataclasses.dataclass(frozen=True)
class PruneReport(Report):
    """Catalog history removed by `gc(events_older_than=...)`, and the file before and after compaction."""

    conversions: int
    partitions_removed: int
    events_removed: int
    run_events_removed: int
    catalog_bytes_before: int
    catalog_bytes_after: int
    cutoff: datetime
    dry_run: bool


@dataclasses.dataclass(frozen=True)
class GcReport(Report):
    """`ftbridge.gc(...)`: spill files freed per conversion and host, and what still waits."""

    dry_run: bool
    bytes_freed: int
    files: int
    by_host: dict[str, int]
    waiting: int
    ray: bool                  # connected to Ray: every live host deleted its own files
    conversions: list[GcConversion]
    catalog: PruneReport | None = None
