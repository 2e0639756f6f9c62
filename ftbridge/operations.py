"""The read and bookkeeping operations on a catalog: audit, show, verify, gc.

Each returns a typed report (`ftbridge.lineage.reports`) whose `to_dict()` is what the CLI's
`--json` prints. None of them starts Ray or Spark, so the CLI's read commands stay quick;
`ftbridge.recover` (which does) is in `ftbridge.api`.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

from ftbridge.common.errors import ConfigurationError, UnknownConversionError
from ftbridge.convert.ops.gc import collect
from ftbridge.convert.ops.verify import verify as verify_one
from ftbridge.convert.types import schema_from_b64
from ftbridge.lineage import queries
from ftbridge.lineage.audit import audit as audit_conversions
from ftbridge.lineage.audit import run_record, runs_audit
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.kinds import ConversionStatus
from ftbridge.lineage.reports import (
    AuditReport,
    ConversionDetail,
    GcReport,
    RunDetail,
    SchemaField,
    VerifyReport,
)
from ftbridge.lineage.retention import prune

__all__ = ["audit", "gc", "parse_age", "show", "verify"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def audit(*, catalog: str | None = None) -> AuditReport:
    """Every conversion (rows, partition health, recovery events, time to recover) and training run.

    Args:
        catalog: catalog file (default: env FTBRIDGE_CATALOG, else ~/.ftbridge/catalog.duckdb).

    Raises:
        CatalogError: no catalog there, or not a readable ftbridge catalog.
    """
    cat = Catalog(catalog)
    with cat.read() as con:
        return AuditReport(catalog=cat.path, conversions=audit_conversions(con), runs=runs_audit(con))


def show(conversion_or_run: str, *, catalog: str | None = None) -> ConversionDetail | RunDetail:
    """One conversion (its catalog row, schema, partitions, events) or one training run (summary, timeline).

    Args:
        conversion_or_run: a conversion id or unique prefix of one, or a run's id or name.

    Raises:
        UnknownConversionError: neither a conversion nor a run of that catalog.
    """
    cat = Catalog(catalog)
    with cat.read() as con:
        run = queries.run(con, conversion_or_run)
        if run is not None:
            summary, timeline = run_record(con, run)
            return RunDetail(run=summary, timeline=timeline)
    try:
        conv, parts = cat.load(conversion_or_run)
    except UnknownConversionError as exc:
        raise UnknownConversionError(f"{exc} Training runs are listed there too; no run is named or numbered "
                                     f"{conversion_or_run!r} either.", conversion_id=conversion_or_run) from None
    with cat.read() as con:
        events = queries.events(con, conv["conversion_id"])
    schema = [SchemaField(name=f.name, type=str(f.type)) for f in schema_from_b64(conv.pop("schema_b64"))]
    return ConversionDetail(conversion=conv, schema=schema, partitions=parts, events=events)


def verify(*conversion_ids: str, catalog: str | None = None) -> list[VerifyReport]:
    """Re-check the spill files of the given conversions (none given: every active one).

    Each file is checked for presence, size and checksum; the results are recorded in the catalog
    (events, partition states). A report's `health` is HEALTHY, DEGRADED (rebuildable: a recipe
    is recorded or the driver that made it still runs) or DATA_LOST.
    """
    cat = Catalog(catalog)
    if not conversion_ids:
        with cat.read() as con:
            conversion_ids = tuple(c["conversion_id"] for c in queries.conversions(con)
                                   if c["status"] == ConversionStatus.ACTIVE)
    return [verify_one(cat, cid) for cid in conversion_ids]


def parse_age(age: str | timedelta) -> timedelta:
    """A timedelta, or a number and one of s, m, h, d, w ("7d")."""
    if isinstance(age, timedelta):
        return age
    match = re.fullmatch(r"(\d+)([smhdw])", str(age).strip())
    if not match:
        raise ConfigurationError(f"age {age!r}: use a number and one of s, m, h, d, w (e.g. 7d), or a timedelta")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def gc(*, older_than: str | timedelta | None = None, events_older_than: str | timedelta | None = None,
       dry_run: bool = False, catalog: str | None = None) -> GcReport:
    """Delete spill files of released conversions (and copies left on hosts that were down).

    Node-local files are deleted by the host that holds them when this process is connected to
    Ray (`ray.init(address=...)`); otherwise only this host's are reached and the rest are
    reported as `waiting`, for a later gc.

    Args:
        older_than: also expire active conversions created longer ago than this ("7d" or a timedelta).
        events_older_than: drop partitions and events of conversions released longer ago than
            this, then compact the catalog file (the report's `catalog`).
        dry_run: say what would be deleted; delete nothing.
    """
    age = parse_age(older_than) if older_than is not None else None
    history_age = parse_age(events_older_than) if events_older_than is not None else None
    cat = Catalog(catalog)
    report = collect(cat, age, dry_run)
    if history_age is None:
        return report
    return dataclasses.replace(report, catalog=prune(cat, history_age, dry_run))
