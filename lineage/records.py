"""Writes to the catalog. Each function runs inside one `Catalog.write()` transaction.

They take the typed rows of `rows`; the SQL's column names come from those, never from a dict.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ftbridge.lineage.catalog import Catalog, now
from ftbridge.lineage.kinds import ConversionStatus, PartitionState
from ftbridge.lineage.rows import (
    ConversionRow,
    EventRow,
    LeftoverRow,
    PartitionRow,
    PartitionUpdate,
    Row,
    RunEventRow,
    RunInputRow,
    RunRow,
    RunUpdate,
)

BULK_ROWS = 3  # from this many on, one Arrow insert (8 events: 9 ms, not 30; 5,000: 0.1 s, not 15 s)


def insert_rows(con, cls: type[Row], rows: list, conflict: str = "") -> None:
    """Insert rows of one table (`conflict`: an ON CONFLICT clause)."""
    if not rows:
        return
    cols = ", ".join(cls.columns())
    if len(rows) < BULK_ROWS:
        for row in rows:
            con.execute(f"INSERT INTO {cls.TABLE} ({cols}) VALUES ({', '.join('?' * len(cls.columns()))}) {conflict}",
                        row.values())
        return
    table = cls.arrow_table(rows)
    con.register("_new_rows", table)
    try:
        con.execute(f"INSERT INTO {cls.TABLE} ({cols}) SELECT {cols} FROM _new_rows {conflict}")
    finally:
        con.unregister("_new_rows")


def insert_conversion(con, conversion: ConversionRow, partitions: list[PartitionRow]) -> None:
    """Insert a conversion and its partitions; replaying the same call leaves the same rows."""
    con.execute("DELETE FROM partitions WHERE conversion_id = ?", [conversion.conversion_id])
    con.execute("DELETE FROM conversions WHERE conversion_id = ?", [conversion.conversion_id])
    insert_rows(con, ConversionRow, [conversion])
    ts = now()
    for p in partitions:
        p.updated_at = ts
    insert_rows(con, PartitionRow, partitions)


def insert_recorded_conversion(con, conversion: ConversionRow, partitions: list[PartitionRow],
                               events: list[EventRow]) -> None:
    """A conversion's whole record: its row, its partitions and its events (its `created` event)."""
    insert_conversion(con, conversion, partitions)
    insert_events(con, events)


def insert_events(con, events: list[EventRow]) -> None:
    """Insert events; ids already there are skipped (a replayed call writes nothing twice)."""
    insert_rows(con, EventRow, events, "ON CONFLICT DO NOTHING")


def update_partition(con, conversion_id: str, partition_id: int, update: PartitionUpdate) -> None:
    """Set columns of one partition. A new `path` makes the copy it replaces a leftover file
    (`gc` deletes it on its host), and a leftover at the new path is the live copy again."""
    fields = update.fields()
    if update.path is not None:
        old = con.execute("SELECT path, node_id FROM partitions WHERE conversion_id = ? AND partition_id = ?",
                          [conversion_id, partition_id]).fetchone()
        con.execute("DELETE FROM leftover_files WHERE path = ?", [update.path])
        if old is not None and old[0] != update.path:
            add_leftovers(con, [LeftoverRow(path=old[0], conversion_id=conversion_id, partition_id=partition_id,
                                            node_id=old[1], reason="superseded")])
    fields["updated_at"] = now()
    sets = ", ".join(f"{k} = ?" for k in fields)  # names of PartitionUpdate's fields, not of a caller's dict
    con.execute(f"UPDATE partitions SET {sets} WHERE conversion_id = ? AND partition_id = ?",
                [*fields.values(), conversion_id, partition_id])


def set_conversion_status(con, conversion_id: str, status: str, partition_state: str | None = None) -> None:
    con.execute("UPDATE conversions SET status = ?, released_at = CASE WHEN ? = 'released' THEN ? ELSE released_at END "
                "WHERE conversion_id = ?", [status, status, now(), conversion_id])
    if partition_state:
        con.execute("UPDATE partitions SET state = ?, updated_at = ? WHERE conversion_id = ?",
                    [partition_state, now(), conversion_id])


def add_leftovers(con, files: list[LeftoverRow]) -> None:
    """Record files that may still be on a host; a path already recorded keeps its row (its host is filled in)."""
    for f in files:
        f.recorded_at = f.recorded_at or now()
        con.execute(f"INSERT INTO leftover_files ({', '.join(LeftoverRow.columns())}) VALUES "
                    f"({', '.join('?' for _ in LeftoverRow.columns())}) ON CONFLICT (path) DO UPDATE SET "
                    "host = COALESCE(excluded.host, leftover_files.host), reason = excluded.reason",
                    f.values())


def drop_leftovers(con, paths: list[str]) -> None:
    """Forget leftover files that are gone (deleted on their host, or found absent there)."""
    for path in paths:
        con.execute("DELETE FROM leftover_files WHERE path = ?", [path])


def leftover(conversion_id: str, file: dict, reason: str) -> LeftoverRow:
    """A leftover row from a deletion pass's description of a file it could not delete."""
    return LeftoverRow(path=file["path"], conversion_id=conversion_id, partition_id=file.get("partition_id"),
                       node_id=file.get("node_id"), host=file.get("host"), reason=reason)


def insert_run(con, run: RunRow, inputs: dict[str, str], events: list[RunEventRow]) -> None:
    """A training run, the conversions it reads ({dataset name: conversion id}) and its first events."""
    con.execute("DELETE FROM run_inputs WHERE run_id = ?", [run.run_id])
    con.execute("DELETE FROM runs WHERE run_id = ?", [run.run_id])
    insert_rows(con, RunRow, [run])
    insert_rows(con, RunInputRow, [RunInputRow(run_id=run.run_id, dataset=d, conversion_id=c)
                                   for d, c in inputs.items()])
    insert_run_events(con, events)


def insert_run_events(con, events: list[RunEventRow]) -> None:
    insert_rows(con, RunEventRow, events, "ON CONFLICT DO NOTHING")


def update_run(con, run_id: str, update: RunUpdate) -> None:
    """Set columns of a run; `ray_run_id` is only filled once (the first report names it)."""
    if update.ray_run_id is not None:
        con.execute("UPDATE runs SET ray_run_id = ? WHERE run_id = ? AND ray_run_id IS NULL",
                    [update.ray_run_id, run_id])
    if update.status is not None:
        con.execute("UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE run_id = ?",
                    [update.status, update.finished_at, update.error, run_id])



class Transactions:
    """The catalog's writes, each one transaction: what the writer actor serves and what a process
    without Ray does straight into the file (both through `CatalogClient`)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @contextlib.contextmanager
    def transaction(self) -> Iterator:
        with self.catalog.write() as con:
            yield con

    def record_conversion(self, conversion: ConversionRow, partitions: list[PartitionRow],
                          events: list[EventRow]) -> None:
        with self.transaction() as con:
            insert_recorded_conversion(con, conversion, partitions, events)

    def record_events(self, events: list[EventRow]) -> None:
        with self.transaction() as con:
            insert_events(con, events)

    def update_partitions(self, conversion_id: str, updates: list[tuple[int, PartitionUpdate]],
                          events: list[EventRow]) -> None:
        with self.transaction() as con:
            for partition_id, update in updates:
                update_partition(con, conversion_id, partition_id, update)
            insert_events(con, events)

    def set_status(self, conversion_id: str, status: str, partition_state: str | None,
                   events: list[EventRow]) -> None:
        with self.transaction() as con:
            set_conversion_status(con, conversion_id, status, partition_state)
            insert_events(con, events)

    def release(self, conversion_id: str, gone: list[str], waiting: list[dict], events: list[EventRow]) -> None:
        """Mark a conversion released; record which of its files are gone and which still wait
        (cleanup's descriptions: path, partition_id, node_id, host)."""
        self.files_freed(conversion_id, gone, [leftover(conversion_id, w, "host_down") for w in waiting], events,
                         release=True)

    def files_freed(self, conversion_id: str, gone: list[str], waiting: list[LeftoverRow], events: list[EventRow],
                    release: bool) -> None:
        """After a deletion pass: `gone` paths are off every host, `waiting` files are still to
        delete; with `release`, the conversion and its partitions are released."""
        with self.transaction() as con:
            if release:
                set_conversion_status(con, conversion_id, ConversionStatus.RELEASED, PartitionState.RELEASED)
            drop_leftovers(con, gone)
            add_leftovers(con, waiting)
            insert_events(con, events)

    def record_run(self, run: RunRow, inputs: dict[str, str], events: list[RunEventRow]) -> None:
        with self.transaction() as con:
            insert_run(con, run, inputs, events)

    def record_run_events(self, run_id: str, update: RunUpdate, events: list[RunEventRow]) -> None:
        """Events of a training run, and what changes in its row."""
        with self.transaction() as con:
            update_run(con, run_id, update)
            insert_run_events(con, events)
