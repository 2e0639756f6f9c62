"""Reads used by the engine, the audit and the CLI. Each takes an open connection."""

from __future__ import annotations

from ftbridge_common.errors import UnknownConversionError


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


def partitions(con, conversion_id: str) -> list[dict]:
    return _dicts(con.execute("SELECT * FROM partitions WHERE conversion_id = ? ORDER BY partition_id",
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
