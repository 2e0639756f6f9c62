"""Reads used by the engine, the audit and the CLI. Each takes an open connection."""

from __future__ import annotations

from ftbridge.common.errors import UnknownConversionError


def _dicts(cursor) -> list[dict]:
    cols = [d[0] for d in cursor.description]
    return [dict(zip(cols, row)) for row in cursor.fetchall()]


def conversion(con, conversion_id: str) -> dict:
    rows = _dicts(con.execute("SELECT * FROM conversions WHERE conversion_id = ?", [conversion_id]))
    if not rows:
        matches = _dicts(con.execute("SELECT * FROM conversions WHERE conversion_id LIKE ? OR name = ?",
                                     [f"{conversion_id}%", conversion_id]))
        if len(matches) == 1:
            return matches[0]
        raise UnknownConversionError(
            f"no conversion {conversion_id!r} in the catalog"
            + (f" ({len(matches)} match that prefix or name; give more of the id)" if matches else "")
            + ". `ftbridge audit` lists the known conversions.", conversion_id=conversion_id)
    return rows[0]


def conversions(con) -> list[dict]:
    return _dicts(con.execute("SELECT * FROM conversions ORDER BY created_at"))


def reusable(con) -> list[dict]:
    """Active Spark -> Ray conversions that recorded a reuse key, newest first."""
    return _dicts(con.execute("SELECT * FROM conversions WHERE status = 'active' AND reuse_key IS NOT NULL "
                              "AND coalesce(direction, 'spark_to_ray') = 'spark_to_ray' ORDER BY created_at DESC"))


def partitions(con, conversion_id: str) -> list[dict]:
    return _dicts(con.execute("SELECT * FROM partitions WHERE conversion_id = ? ORDER BY partition_id",
                              [conversion_id]))


def leftovers(con, conversion_id: str | None = None) -> list[dict]:
    """Files that are no partition's copy but may still be on a host (see `records.add_leftovers`);
    [] for a catalog of schema < 6 opened read-only (migrated by the next writer)."""
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'leftover_files'").fetchone()[0]:
        return []
    if conversion_id is None:
        return _dicts(con.execute("SELECT * FROM leftover_files ORDER BY recorded_at, path"))
    return _dicts(con.execute("SELECT * FROM leftover_files WHERE conversion_id = ? ORDER BY partition_id, path",
                              [conversion_id]))


def events(con, conversion_id: str | None = None) -> list[dict]:
    if conversion_id is None:
        return _dicts(con.execute("SELECT * FROM events ORDER BY started_at"))
    return _dicts(con.execute("SELECT * FROM events WHERE conversion_id = ? ORDER BY started_at, kind",
                              [conversion_id]))


def partition_states(con) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for conv, state, n in con.execute(
            "SELECT conversion_id, state, count(*) FROM partitions GROUP BY ALL").fetchall():
        out.setdefault(conv, {})[state] = n
    return out


def _has_runs(con) -> bool:
    """False for a catalog of schema < 5 opened read-only (migrated by the next writer)."""
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'runs'").fetchone()[0])


def runs(con) -> list[dict]:
    return _dicts(con.execute("SELECT * FROM runs ORDER BY started_at")) if _has_runs(con) else []


def run(con, key: str) -> dict | None:
    """A training run by id, unique id prefix, name or Ray Train run id; None if nothing matches."""
    if not _has_runs(con):
        return None
    rows = _dicts(con.execute("SELECT * FROM runs WHERE run_id = ? OR ray_run_id = ?", [key, key]))
    if not rows:
        rows = _dicts(con.execute("SELECT * FROM runs WHERE run_id LIKE ? OR name = ? ORDER BY started_at DESC",
                                  [f"{key}%", key]))
    return rows[0] if rows else None


def run_inputs(con, run_id: str) -> dict[str, str]:
    return dict(con.execute("SELECT dataset, conversion_id FROM run_inputs WHERE run_id = ? ORDER BY dataset",
                            [run_id]).fetchall())


def run_events(con, run_id: str) -> list[dict]:
    return _dicts(con.execute("SELECT * FROM run_events WHERE run_id = ? ORDER BY happened_at, kind", [run_id]))


def events_between(con, conversion_ids: list[str], start, end) -> list[dict]:
    """Events of `conversion_ids` that started in [start, end] (end None: until now)."""
    if not conversion_ids:
        return []
    marks = ", ".join("?" * len(conversion_ids))
    sql = f"SELECT * FROM events WHERE conversion_id IN ({marks}) AND started_at >= ?"
    args = [*conversion_ids, start]
    if end is not None:
        sql += " AND started_at <= ?"
        args.append(end)
    return _dicts(con.execute(sql + " ORDER BY started_at", args))
