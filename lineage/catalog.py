"""The DuckDB lineage catalog.

DuckDB allows one writing process per file and a writer's lock also shuts out readers.
So a `Catalog` never keeps the file open: every operation opens a connection, does its
work in one transaction and closes it, and a busy file is retried with a bounded policy.
That keeps the file readable by the CLI while a job runs; each commit is durable once the
call returns (DuckDB's WAL), so a kill -9 of the writer loses no committed record.
Only one process writes at a time in practice: the `CatalogWriter` actor in a Ray job,
or the CLI when no job is running.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ftbridge.common import foreign
from ftbridge.common.config import settings
from ftbridge.common.errors import CatalogCorruptError, CatalogMissingError, CatalogVersionError
from ftbridge.common.retry import catalog_lock_retry
from ftbridge.lineage import queries
from ftbridge.lineage.schema import MIGRATIONS, REQUIRED_TABLES, SCHEMA_VERSION

log = logging.getLogger(__name__)


def default_catalog_path(path: str | os.PathLike | None = None) -> str:
    """Argument, else env FTBRIDGE_CATALOG, else ~/.ftbridge/catalog.duckdb."""
    chosen = path or settings().catalog
    return str(Path(chosen).expanduser().resolve())


def now() -> datetime:
    return datetime.now(UTC)


def _make_private(path: str) -> None:
    """The catalog file (and its WAL) readable by its owner only: it names hosts, paths, plans."""
    for name in (path, path + ".wal"):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except OSError:
            pass


# Called with a catalog's path before each read of it in this process: its writer commits what
# this process sent it without waiting (see `writer.CatalogClient.flush_soon`).
_BEFORE_READ: list[Callable[[str], None]] = []


def before_read(hook: Callable[[str], None]) -> None:
    _BEFORE_READ.append(hook)


class Catalog:
    """Owns access to one catalog file. Cheap to create; picklable (holds only the path)."""

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True) -> None:
        self.path = default_catalog_path(path)
        self.create = create
        self._checked = False

    def __reduce__(self):
        return (Catalog, (self.path,), {"create": self.create})

    def __setstate__(self, state):
        self.create = state["create"]
        self._checked = False

    # -- connections -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self, read_only: bool):
        if read_only and not os.path.exists(self.path):
            raise CatalogMissingError(
                f"no catalog at {self.path}. Run a conversion first, or point --catalog / FTBRIDGE_CATALOG "
                "at an existing catalog file.", path=self.path)
        if not read_only:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        con = self._open(read_only)
        if not read_only:
            _make_private(self.path)
        try:
            yield con
        finally:
            con.close()

    def _open(self, read_only: bool):
        def attempt():
            try:
                return duckdb.connect(self.path, read_only=read_only)
            except duckdb.Error as exc:
                raise foreign.catalog_open_failed(exc, self.path) from exc

        return catalog_lock_retry(attempt)

    @contextlib.contextmanager
    def read(self):
        """A read-only connection on a checked schema."""
        for hook in _BEFORE_READ:
            hook(self.path)
        with self._connect(read_only=True) as con:
            self._check_schema(con, writable=False)
            yield con

    @contextlib.contextmanager
    def write(self):
        """A read-write connection inside one transaction: all or nothing."""
        with self._connect(read_only=False) as con:
            self._check_schema(con, writable=True)
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- schema ------------------------------------------------------------------------------
    def _check_schema(self, con, writable: bool) -> None:
        # Once this object has checked the file in full, a transaction only confirms the
        # version (one query, not the table listing): the writer actor makes many.
        if self._checked and self._version_is_current(con):
            return
        self._full_check(con, writable)
        self._checked = self._version_is_current(con)

    @staticmethod
    def _version_is_current(con) -> bool:
        try:
            row = con.execute("SELECT value FROM ftbridge_meta WHERE key = 'schema_version'").fetchone()
        except duckdb.Error:  # no such table: the full check says what the file is
            return False
        return bool(row) and row[0] == str(SCHEMA_VERSION)

    def _full_check(self, con, writable: bool) -> None:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        version = 0
        if "ftbridge_meta" in tables:
            row = con.execute("SELECT value FROM ftbridge_meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
        elif tables:
            raise CatalogCorruptError(
                f"{self.path} is a DuckDB file but not an ftbridge catalog (tables: {sorted(tables)}).",
                path=self.path)
        if version > SCHEMA_VERSION:
            raise CatalogVersionError(
                f"catalog {self.path} has schema version {version}; this ftbridge knows up to {SCHEMA_VERSION}. "
                "Upgrade ftbridge to read it.", path=self.path, version=version)
        if version < SCHEMA_VERSION:
            if not writable:
                if version == 0:
                    raise CatalogCorruptError(f"{self.path} has no ftbridge tables.", path=self.path)
                return  # older but readable; the next writer migrates it
            self._migrate(con, version)
        elif "ftbridge_meta" in tables and not set(REQUIRED_TABLES) <= tables:
            raise CatalogCorruptError(
                f"catalog {self.path} misses tables {sorted(set(REQUIRED_TABLES) - tables)}.", path=self.path)

    def _migrate(self, con, current: int) -> None:
        con.execute("BEGIN TRANSACTION")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute("INSERT OR REPLACE INTO ftbridge_meta VALUES ('schema_version', ?)", [str(version)])
            log.info("catalog %s migrated to schema version %d", self.path, version)
        con.execute("COMMIT")

    def load(self, conversion_id: str) -> tuple[dict, list[dict]]:
        """A recorded conversion (by id, unique prefix or name) and its partitions, in order."""
        with self.read() as con:
            conv = queries.conversion(con, conversion_id)
            return conv, queries.partitions(con, conv["conversion_id"])

    def schema_version(self) -> int:
        with self.read() as con:
            return int(con.execute("SELECT value FROM ftbridge_meta WHERE key='schema_version'").fetchone()[0])
