"""One output switch for every command: Rich tables for people, one JSON document for machines."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import sys
from datetime import date, datetime

import click
from rich.console import Console

from ftbridge.cli.exit_codes import ExitCode, for_error
from ftbridge.common.errors import FtbridgeError

# Piped output (CI logs, `| less`) gets a wide table instead of Rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 180)
err_console = Console(stderr=True)


def _default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


@contextlib.contextmanager
def native_stderr_to(path: str):
    """Send what native code writes to file descriptor 2 (Ray's C++ core worker, child JVMs) to
    `path`; Python's `sys.stderr`, logging and Rich keep the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1, errors="replace")
    old = sys.stderr
    moved = [h for h in logging.root.handlers if isinstance(h, logging.StreamHandler) and h.stream is old]
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 2)
    sys.stderr = terminal
    for handler in moved:
        handler.setStream(terminal)
    try:
        yield
    finally:
        terminal.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr = old
        for handler in moved:
            handler.setStream(old)
        terminal.close()


def emit_json(doc) -> None:
    click.echo(json.dumps(doc, default=_default, indent=2))


def catalog_options(read: bool = True):
    """--catalog on every command; --json on read commands."""

    def decorate(fn):
        fn = click.option("--catalog", "catalog", type=click.Path(dir_okay=False), default=None,
                          help="Catalog file (default: $FTBRIDGE_CATALOG, else ~/.ftbridge/catalog.duckdb).")(fn)
        if read:
            fn = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)
        return fn

    return decorate


def human_bytes(n) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            break
        n /= 1024
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"


def short_paths(text: str | None) -> str:
    """Spill paths are long; people need the file name (the catalog keeps the full path)."""
    return re.sub(r"(?:file://)?/\S*/([^/\s]+\.arrow)", r"…/\1", text or "")


def fail(message: str, code: ExitCode) -> None:
    err_console.print(f"[bold red]Error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(int(code))


def handle_errors(fn):
    """Turn ftbridge errors into `Error: ...` and the exit code of their kind (see exit_codes.py)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FtbridgeError as exc:
            fail(str(exc), for_error(exc))

    return wrapper
