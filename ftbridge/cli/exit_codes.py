"""What `ftbridge`'s exit status means, for every command.

A cron job or script can act on the number alone: 0 and 1 need no action now, 2 is lost data,
3 is a mistake in the command (fix it, do not retry), 4 is a passing condition (retry later),
5 is any other failure.
"""

from __future__ import annotations

from enum import IntEnum

from ftbridge.common.errors import (
    CatalogError,
    ConfigurationError,
    ConversionReleasedError,
    FtbridgeError,
    NonDeterministicRebuildError,
    PartitionLostError,
    UnknownConversionError,
)
from ftbridge.lineage.reports import Health


class ExitCode(IntEnum):
    """The first three are a report's `Health`; the rest are how a command failed."""

    HEALTHY = int(Health.HEALTHY)      # done; every checked partition is healthy
    DEGRADED = int(Health.DEGRADED)    # files missing or corrupt, and a recipe or the live driver can rebuild them
    DATA_LOST = int(Health.DATA_LOST)  # partitions that nothing can rebuild
    BAD_INPUT = 3    # bad arguments, unknown conversion id, no catalog / not a catalog, bad settings
    TRANSIENT = 4    # the catalog is busy or a bounded wait ran out: retrying later may pass
    FAILED = 5       # anything else (see the message)


def for_error(exc: BaseException) -> ExitCode:
    """The exit code of a command that ended with `exc`."""
    if not isinstance(exc, FtbridgeError):
        return ExitCode.FAILED
    if exc.retryable:
        return ExitCode.TRANSIENT
    if isinstance(exc, (PartitionLostError, NonDeterministicRebuildError)):
        return ExitCode.DATA_LOST
    if isinstance(exc, (ConfigurationError, UnknownConversionError, ConversionReleasedError, CatalogError)):
        return ExitCode.BAD_INPUT
    return ExitCode.FAILED


def table() -> str:
    """The codes as docs/reference/cli.md and `ftbridge --help` show them."""
    return "\n".join(f"{int(c)} {c.name.lower().replace('_', ' ')}" for c in ExitCode)
