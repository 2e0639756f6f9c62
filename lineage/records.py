"""Writes to the catalog. Each function runs inside one `Catalog.write()` transaction."""

from __future__ import annotations

import pyarrow as pa

from ftbridge.lineage.catalog import now
from ftbridge.lineage.kinds import PartitionState

PARTITION_COLUMNS = ("conversion_id", "partition_id", "path", "node_id", "num_rows", "num_bytes", "checksum",
                     "state", "rebuilt_count", "updated_at")
EVENT_COLUMNS = ("event_id", "conversion_id", "partition_id", "kind", "started_at", "finished_at", "duration_s",
                 "node_id", "source", "detail")


def insert_conversion(con, conversion: dict, partitions: list[dict]) -> None:
    """Insert a conversion and its partitions; replaying the same call leaves the same rows."""
    con.execute("DELETE FROM partitions WHERE conversion_id = ?", [conversion["conversion_id"]])
    con.execute("DELETE FROM conversions WHERE conversion_id = ?", [conversion["conversion_id"]])
    cols = list(conversion)
    con.execute(
        f"INSERT INTO conversions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        [conversion[c] for c in cols])
    if partitions:
        ts = now()
        rows = {c: [p.get(c) for p in partitions] for c in PARTITION_COLUMNS if c not in ("updated_at",)}
        rows["conversion_id"] = [conversion["conversion_id"]] * len(partitions)
        rows["state"] = [p.get("state") or PartitionState.HEALTHY for p in partitions]
        rows["rebuilt_count"] = [p.get("rebuilt_count") or 0 for p in partitions]
        rows["updated_at"] = [ts] * len(partitions)
        table = pa.table({c: rows[c] for c in PARTITION_COLUMNS})  # bulk insert through Arrow: 10k partitions in well under a second
        con.register("_new_partitions", table)
        try:
            con.execute(f"INSERT INTO partitions ({', '.join(PARTITION_COLUMNS)}) "
                        f"SELECT {', '.join(PARTITION_COLUMNS)} FROM _new_partitions")
        finally:
            con.unregister("_new_partitions")


EVENT_SCHEMA = pa.schema([("event_id", pa.string()), ("conversion_id", pa.string()), ("partition_id", pa.int32()),
                          ("kind", pa.string()), ("started_at", pa.timestamp("us", tz="UTC")),
                          ("finished_at", pa.timestamp("us", tz="UTC")), ("duration_s", pa.float64()),
                          ("node_id", pa.string()), ("source", pa.string()), ("detail", pa.string())])
BULK_EVENTS = 3  # from this many on, one Arrow insert (8 events: 9 ms, not 30; 5,000: 0.1 s, not 15 s)


def insert_events(con, events: list[dict]) -> None:
    """Insert events; ids already there are skipped (a replayed call writes nothing twice)."""
    if len(events) < BULK_EVENTS:
        for ev in events:
            con.execute(
                f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))}) "
                "ON CONFLICT DO NOTHING",
                [ev.get(c) for c in EVENT_COLUMNS])
        return
    table = pa.table({c: [None if ev.get(c) is None else (str(ev[c]) if EVENT_SCHEMA.field(c).type == pa.string()
                                                          else ev[c]) for ev in events]
                      for c in EVENT_COLUMNS}, schema=EVENT_SCHEMA)
    con.register("_new_events", table)
    try:
        con.execute(f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) SELECT {', '.join(EVENT_COLUMNS)} "
                    "FROM _new_events ON CONFLICT DO NOTHING")
    finally:
        con.unregister("_new_events")


def update_partition(con, conversion_id: str, partition_id: int, fields: dict) -> None:
    """Set columns of one partition. A new `path` makes the copy it replaces a leftover file
    (`gc` deletes it on its host), and a leftover at the new path is the live copy again."""
    if not fields:
        return
    if "path" in fields:
        old = con.execute("SELECT path, node_id FROM partitions WHERE conversion_id = ? AND partition_id = ?",
                          [conversion_id, partition_id]).fetchone()
        con.execute("DELETE FROM leftover_files WHERE path = ?", [fields["path"]])
        if old is not None and old[0] != fields["path"]:
            add_leftovers(con, [{"path": old[0], "conversion_id": conversion_id, "partition_id": partition_id,
                                 "node_id": old[1], "host": None, "reason": "superseded"}])
    fields = {**fields, "updated_at": now()}
    sets = ", ".join(f"{k} = ?" for k in fields)
    con.execute(f"UPDATE partitions SET {sets} WHERE conversion_id = ? AND partition_id = ?",
                [*fields.values(), conversion_id, partition_id])


def set_conversion_status(con, conversion_id: str, status: str, partition_state: str | None = None) -> None:
    con.execute("UPDATE conversions SET status = ?, released_at = CASE WHEN ? = 'released' THEN ? ELSE released_at END "
                "WHERE conversion_id = ?", [status, status, now(), conversion_id])
    if partition_state:
        con.execute("UPDATE partitions SET state = ?, updated_at = ? WHERE conversion_id = ?",
                    [partition_state, now(), conversion_id])


LEFTOVER_COLUMNS = ("path", "conversion_id", "partition_id", "node_id", "host", "reason", "recorded_at")


def add_leftovers(con, files: list[dict]) -> None:
    """Record files that may still be on a host; a path already recorded keeps its row (its host is filled in)."""
    for f in files:
        row = {**f, "recorded_at": f.get("recorded_at") or now()}
        con.execute(f"INSERT INTO leftover_files ({', '.join(LEFTOVER_COLUMNS)}) VALUES "
                    f"({', '.join('?' for _ in LEFTOVER_COLUMNS)}) ON CONFLICT (path) DO UPDATE SET "
                    "host = COALESCE(excluded.host, leftover_files.host), reason = excluded.reason",
                    [row[c] for c in LEFTOVER_COLUMNS])


def drop_leftovers(con, paths: list[str]) -> None:
    """Forget leftover files that are gone (deleted on their host, or found absent there)."""
    for path in paths:
        con.execute("DELETE FROM leftover_files WHERE path = ?", [path])


def release_files(con, conversion_id: str, gone: list[str], waiting: list[dict]) -> None:
    """After a deletion pass: `gone` paths are off every host; `waiting` ones are still to delete."""
    drop_leftovers(con, gone)
    add_leftovers(con, [{**w, "conversion_id": conversion_id, "reason": "host_down"} for w in waiting])


RUN_EVENT_COLUMNS = ("event_id", "run_id", "kind", "happened_at", "epoch", "checkpoint", "detail")


def insert_run(con, run: dict, inputs: dict[str, str], events: list[dict]) -> None:
    """A training run, the conversions it reads ({dataset name: conversion id}) and its first events."""
    con.execute("DELETE FROM run_inputs WHERE run_id = ?", [run["run_id"]])
    con.execute("DELETE FROM runs WHERE run_id = ?", [run["run_id"]])
    cols = list(run)
    con.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [run[c] for c in cols])
    for dataset, conversion_id in inputs.items():
        con.execute("INSERT INTO run_inputs VALUES (?, ?, ?)", [run["run_id"], dataset, conversion_id])
    insert_run_events(con, events)


def insert_run_events(con, events: list[dict]) -> None:
    for ev in events:
        con.execute(f"INSERT INTO run_events ({', '.join(RUN_EVENT_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(RUN_EVENT_COLUMNS))}) ON CONFLICT DO NOTHING",
                    [ev.get(c) for c in RUN_EVENT_COLUMNS])


def update_run(con, run_id: str, fields: dict) -> None:
    """Set columns of a run; `ray_run_id` is only filled once (the first report names it)."""
    fields = dict(fields)
    if "ray_run_id" in fields:
        con.execute("UPDATE runs SET ray_run_id = ? WHERE run_id = ? AND ray_run_id IS NULL",
                    [fields.pop("ray_run_id"), run_id])
    if fields:
        sets = ", ".join(f"{k} = ?" for k in fields)
        con.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", [*fields.values(), run_id])
