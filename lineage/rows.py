"""The catalog's records, each defined once: its table, its columns in table order, their types.

Every write goes through one of these (`records` turns them into SQL and Arrow); nothing
takes column names from a dict. The migrations in `schema` are the DDL's history; a test
checks that a migrated catalog has exactly these columns with these types.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import pyarrow as pa

from ftbridge.lineage.kinds import EventKind, PartitionState, RunEventKind

ARROW_TYPES = {"VARCHAR": pa.string(), "INTEGER": pa.int32(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(),
               "BOOLEAN": pa.bool_(), "TIMESTAMP WITH TIME ZONE": pa.timestamp("us", tz="UTC")}


def col(sql: str, default: Any = dataclasses.MISSING) -> Any:
    """A column of SQL type `sql` (DuckDB's own spelling, as DESCRIBE shows it)."""
    return dataclasses.field(default=default, metadata={"sql": sql})


def utcnow() -> datetime:
    return datetime.now(UTC)


class Row:
    """A table's row. Subclasses are dataclasses whose fields are the table's columns in order."""

    __slots__ = ()
    TABLE: ClassVar[str]

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def sql_types(cls) -> dict[str, str]:
        return {f.name: f.metadata["sql"] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def arrow_schema(cls) -> pa.Schema:
        return pa.schema([(name, ARROW_TYPES[sql]) for name, sql in cls.sql_types().items()])

    def values(self) -> list:
        return [getattr(self, name) for name in self.columns()]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def arrow_table(cls, rows: list) -> pa.Table:
        """Rows as one Arrow table of this schema (a bulk insert: 10k rows in well under a second)."""
        schema = cls.arrow_schema()
        return pa.table({name: [getattr(r, name) for r in rows] for name in cls.columns()}, schema=schema)


@dataclasses.dataclass(slots=True, kw_only=True)
class ConversionRow(Row):
    """One conversion (Spark -> Ray spill, or Ray -> Spark staging)."""

    TABLE: ClassVar[str] = "conversions"
    conversion_id: str = col("VARCHAR")
    name: str | None = col("VARCHAR", None)
    created_at: datetime = col("TIMESTAMP WITH TIME ZONE")
    status: str = col("VARCHAR")
    plan_text: str | None = col("VARCHAR", None)
    plan_hash: str | None = col("VARCHAR", None)
    schema_b64: str = col("VARCHAR")
    storage_level: str | None = col("VARCHAR", None)
    spill_root: str = col("VARCHAR")
    node_local: bool = col("BOOLEAN")
    app_id: str | None = col("VARCHAR", None)
    spark_version: str | None = col("VARCHAR", None)
    num_partitions: int = col("INTEGER")
    total_rows: int = col("BIGINT")
    total_bytes: int = col("BIGINT")
    recipe: str | None = col("VARCHAR", None)
    allow_nondeterministic: bool = col("BOOLEAN", False)
    driver_host: str | None = col("VARCHAR", None)
    driver_pid: int | None = col("INTEGER", None)
    released_at: datetime | None = col("TIMESTAMP WITH TIME ZONE", None)
    spill_format: str | None = col("VARCHAR", None)   # JSON: how the files were made
    direction: str | None = col("VARCHAR", "spark_to_ray")
    reuse_key: str | None = col("VARCHAR", None)       # JSON: plan hash and input files (reuse=True)


@dataclasses.dataclass(slots=True, kw_only=True)
class PartitionRow(Row):
    """One partition's file as recorded."""

    TABLE: ClassVar[str] = "partitions"
    conversion_id: str = col("VARCHAR")
    partition_id: int = col("INTEGER")
    path: str = col("VARCHAR")
    node_id: str | None = col("VARCHAR", None)
    num_rows: int = col("BIGINT")
    num_bytes: int = col("BIGINT")
    checksum: str = col("VARCHAR")
    state: str = col("VARCHAR", PartitionState.HEALTHY)
    rebuilt_count: int = col("INTEGER", 0)
    updated_at: datetime | None = col("TIMESTAMP WITH TIME ZONE", None)  # set when written

    @classmethod
    def of(cls, conversion_id: str, meta: dict) -> PartitionRow:
        """From a spill or staging task's file description (path, node_id, num_rows, num_bytes, checksum)."""
        return cls(conversion_id=conversion_id, partition_id=meta["partition_id"], path=meta["path"],
                   node_id=meta.get("node_id"), num_rows=meta["num_rows"], num_bytes=meta["num_bytes"],
                   checksum=meta["checksum"], state=meta.get("state") or PartitionState.HEALTHY,
                   rebuilt_count=meta.get("rebuilt_count") or 0)


@dataclasses.dataclass(slots=True, kw_only=True)
class PartitionUpdate:
    """What changes in one partition's row: its state, and after a rebuild its new file."""

    state: str
    path: str | None = None
    node_id: str | None = None
    num_rows: int | None = None
    num_bytes: int | None = None
    checksum: str | None = None
    rebuilt_count: int | None = None

    def fields(self) -> dict[str, Any]:
        """The columns to set (the ones given; `node_id` goes with `path`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if getattr(self, f.name) is not None}
        if self.path is not None:
            out["node_id"] = self.node_id
        return out


@dataclasses.dataclass(slots=True, kw_only=True)
class EventRow(Row):
    """Something that happened to a conversion or one of its partitions. Its id is made by the
    caller, so a retried write is idempotent."""

    TABLE: ClassVar[str] = "events"
    event_id: str = col("VARCHAR")
    conversion_id: str = col("VARCHAR")
    partition_id: int | None = col("INTEGER", None)
    kind: EventKind = col("VARCHAR")
    started_at: datetime = col("TIMESTAMP WITH TIME ZONE")
    finished_at: datetime = col("TIMESTAMP WITH TIME ZONE")
    duration_s: float = col("DOUBLE")
    node_id: str | None = col("VARCHAR", None)
    source: str | None = col("VARCHAR", None)
    detail: str | None = col("VARCHAR", None)


@dataclasses.dataclass(slots=True, kw_only=True)
class RunRow(Row):
    """A training run that read conversions."""

    TABLE: ClassVar[str] = "runs"
    run_id: str = col("VARCHAR")
    name: str | None = col("VARCHAR", None)
    ray_run_id: str | None = col("VARCHAR", None)
    trainer: str | None = col("VARCHAR", None)
    started_at: datetime = col("TIMESTAMP WITH TIME ZONE")
    finished_at: datetime | None = col("TIMESTAMP WITH TIME ZONE", None)
    status: str = col("VARCHAR")
    storage_path: str | None = col("VARCHAR", None)
    error: str | None = col("VARCHAR", None)
    driver_host: str | None = col("VARCHAR", None)
    driver_pid: int | None = col("INTEGER", None)


@dataclasses.dataclass(slots=True, kw_only=True)
class RunUpdate:
    """What changes in a run's row: its Ray Train id (set once), and at the end its status."""

    ray_run_id: str | None = None
    status: str | None = None
    finished_at: datetime | None = None
    error: str | None = None


@dataclasses.dataclass(slots=True, kw_only=True)
class RunInputRow(Row):
    """A conversion a training run reads, under the trainer's dataset name."""

    TABLE: ClassVar[str] = "run_inputs"
    run_id: str = col("VARCHAR")
    dataset: str = col("VARCHAR")          # the trainer's dataset name ("train", ...)
    conversion_id: str = col("VARCHAR")


@dataclasses.dataclass(slots=True, kw_only=True)
class RunEventRow(Row):
    """Something that happened to a training run: started, a report (epoch, checkpoint, how far into
    its epoch), a resume mid-epoch (where, and the seconds it cost), a worker failure, the end."""

    TABLE: ClassVar[str] = "run_events"
    event_id: str = col("VARCHAR")
    run_id: str = col("VARCHAR")
    kind: RunEventKind = col("VARCHAR")
    happened_at: datetime = col("TIMESTAMP WITH TIME ZONE")
    epoch: int | None = col("INTEGER", None)
    checkpoint: str | None = col("VARCHAR", None)
    detail: str | None = col("VARCHAR", None)
    position: float | None = col("DOUBLE", None)   # share of the epoch consumed (report, resume)
    lost_s: float | None = col("DOUBLE", None)     # a resume: seconds since the checkpoint it went on from


@dataclasses.dataclass(slots=True, kw_only=True)
class LeftoverRow(Row):
    """A file that is no partition's copy any more but may still be on a host."""

    TABLE: ClassVar[str] = "leftover_files"
    path: str = col("VARCHAR")
    conversion_id: str = col("VARCHAR")
    partition_id: int | None = col("INTEGER", None)
    node_id: str | None = col("VARCHAR", None)
    host: str | None = col("VARCHAR", None)
    reason: str = col("VARCHAR")           # superseded | host_down
    recorded_at: datetime | None = col("TIMESTAMP WITH TIME ZONE", None)  # set when written


ROWS: tuple[type[Row], ...] = (ConversionRow, PartitionRow, EventRow, RunRow, RunInputRow, RunEventRow, LeftoverRow)


def new_event_id() -> str:
    return uuid.uuid4().hex


def new_event(conversion_id: str, partition_id: int | None, kind: EventKind, started: float | None = None,
              node_id: str | None = None, source: str | None = None, detail: str = "") -> EventRow:
    """An event that ends now; `started` is a time.time() value (default: now, a zero-length event)."""
    finished = time.time()
    started = finished if started is None else started
    return EventRow(event_id=new_event_id(), conversion_id=conversion_id, partition_id=partition_id, kind=kind,
                    started_at=datetime.fromtimestamp(started, UTC), finished_at=datetime.fromtimestamp(finished, UTC),
                    duration_s=round(finished - started, 6), node_id=node_id, source=source, detail=detail)


def new_run_event(run_id: str, kind: RunEventKind, at: float | None = None, epoch: int | None = None,
                  checkpoint: str | None = None, detail: str = "", position: float | None = None,
                  lost_s: float | None = None) -> RunEventRow:
    """A training run's event; `at` is a time.time() value (default: now)."""
    at = time.time() if at is None else at
    return RunEventRow(event_id=new_event_id(), run_id=run_id, kind=kind, happened_at=datetime.fromtimestamp(at, UTC),
                       epoch=epoch, checkpoint=checkpoint, detail=detail, position=position, lost_s=lost_s)


def markdown_tables() -> str:
    """The tables of docs/reference/catalog.md: each table's columns and types, from the rows."""
    out = []
    for cls in ROWS:
        doc = " ".join((cls.__doc__ or "").split())
        out += [f"### `{cls.TABLE}`", "", doc, "", "| Column | Type |", "|---|---|"]
        out += [f"| `{name}` | {sql} |" for name, sql in cls.sql_types().items()]
        out.append("")
    return "\n".join(out).rstrip()


if __name__ == "__main__":
    print(markdown_tables())
