"""Errors raised by ftbridge (public as `ftbridge.errors`).

Every error carries the facts an operator needs (conversion id, partition, node) as
attributes, says what to do next, and survives pickling across Ray and Spark process
boundaries. Recoverability is marked by mixins, as in dlt::

    FtbridgeError
    ├── ConfigurationError (TerminalError)        bad arguments, missing Java, unwritable spill dir
    │   ├── UnsupportedTypeError                 a column type Arrow cannot carry
    │   ├── JavaRuntimeError                     a Java that cannot run the installed Spark
    │   └── DependencyVersionError               installed releases that do not work together
    ├── ClusterError                              Spark-on-Ray start/stop problems
    │   ├── SparkAlreadyRunningError (TerminalError)
    │   ├── SparkNotRunningError (TerminalError)
    │   ├── InsufficientResourcesError (TerminalError)
    │   └── ClusterStartTimeoutError (TransientError)
    ├── ConversionError
    │   ├── ConversionTimeoutError (TransientError)  a spill job, read or rebuild ran out of time
    │   ├── UnknownConversionError (TerminalError)
    │   ├── ConversionReleasedError (TerminalError)
    │   ├── PartitionLostError (TerminalError)    nothing could rebuild a partition
    │   ├── SpillDiskFullError (TransientError)   a spill file did not fit on its disk
    │   └── NonDeterministicRebuildError (TerminalError)
    ├── TrainingFailedError (TerminalError)      a fit_on_spark trainer failed after its restarts
    └── CatalogError
        ├── CatalogMissingError (TerminalError)   no catalog file at the path given
        ├── CatalogCorruptError (TerminalError)
        ├── CatalogVersionError (TerminalError)
        └── CatalogUnavailableError (TransientError)  busy file, writer unreachable

Foreign errors (Py4J, Ray, DuckDB, Arrow) are translated in one place, `foreign.py`, with
``raise Mapped(...) from exc``.
"""

from __future__ import annotations

from typing import Any


class TransientError:
    """Mixin: retrying the same call later may succeed."""

    retryable = True


class TerminalError:
    """Mixin: retrying the same call will fail the same way."""

    retryable = False


class FtbridgeError(Exception):
    """Root of every ftbridge error. Keyword fields become attributes."""

    retryable = False

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)

    def __reduce__(self):
        return (_rebuild_error, (type(self), self.message, self.fields))

    def __str__(self) -> str:
        return self.message


def _rebuild_error(cls, message, fields):
    err = cls.__new__(cls)
    FtbridgeError.__init__(err, message, **fields)
    return err


class ConfigurationError(TerminalError, FtbridgeError):
    """A bad argument or environment; fix the input and call again."""


class UnsupportedTypeError(ConfigurationError):
    """A column has a Spark type that ftbridge cannot carry through Arrow."""


class JavaRuntimeError(ConfigurationError):
    """The Java runtime cannot run the installed Spark (version out of range, modules missing)."""


class DependencyVersionError(ConfigurationError):
    """Installed releases that do not work together (e.g. pandas 3 with a PySpark older than 4.3)."""


class ClusterError(FtbridgeError):
    """Starting, using or stopping Spark on Ray failed."""


class SparkAlreadyRunningError(TerminalError, ClusterError):
    """init_spark was called while a Spark-on-Ray session is live."""


class SparkNotRunningError(TerminalError, ClusterError):
    """An operation needs a live Spark-on-Ray session and there is none."""


class InsufficientResourcesError(TerminalError, ClusterError):
    """The Ray cluster cannot hold the requested executors."""


class ClusterStartTimeoutError(TransientError, ClusterError):
    """A Spark component did not come up within its time bound."""


class ConversionError(FtbridgeError):
    """A conversion could not be created, read or rebuilt."""


class ConversionTimeoutError(TransientError, ConversionError):
    """A bounded wait of a conversion (spill job, reads, a rebuild) ran out; a retry may pass."""


class SpillDiskFullError(TransientError, ConversionError):
    """A spill file did not fit on its disk; once there is room (or another spill root) a retry passes."""


class UnknownConversionError(TerminalError, ConversionError):
    """No conversion with that id is in the catalog."""


class ConversionReleasedError(TerminalError, ConversionError):
    """The conversion was released; its spill files are gone."""


class PartitionLostError(TerminalError, ConversionError):
    """A partition's spill file is gone or corrupt and nothing could rebuild it."""

    def __init__(self, message: str = "", **fields: Any) -> None:
        if not message:
            message = (
                f"partition {fields.get('partition')} of conversion "
                f"{fields.get('conversion_id')} (node {fields.get('node_id')}) is lost: "
                f"{fields.get('cause')}. Start Spark and run `ftbridge recover "
                f"{fields.get('conversion_id')}`, or register a recipe."
            )
        super().__init__(message, **fields)


class NonDeterministicRebuildError(TerminalError, ConversionError):
    """A rebuilt partition differs from the original (non-deterministic plan)."""


class TrainingFailedError(TerminalError, FtbridgeError):
    """A training run failed after Ray Train's restarts (`run_id`, `cause`); the run is in the catalog."""


class CatalogError(FtbridgeError):
    """The lineage catalog could not be read or written."""


class CatalogMissingError(TerminalError, CatalogError):
    """No catalog file exists at the path a read was pointed at."""


class CatalogCorruptError(TerminalError, CatalogError):
    """The catalog file is not a DuckDB database or misses ftbridge tables."""


class CatalogVersionError(TerminalError, CatalogError):
    """The catalog was written by a newer ftbridge."""


class CatalogUnavailableError(TransientError, CatalogError):
    """The catalog writer could not be reached in time."""


# Written out (type checkers read it): a test keeps it equal to the classes defined here.
__all__ = [
    "TransientError", "TerminalError", "FtbridgeError", "ConfigurationError",
    "UnsupportedTypeError", "JavaRuntimeError", "DependencyVersionError", "ClusterError",
    "SparkAlreadyRunningError", "SparkNotRunningError", "InsufficientResourcesError",
    "ClusterStartTimeoutError", "ConversionError", "ConversionTimeoutError", "SpillDiskFullError",
    "UnknownConversionError", "ConversionReleasedError", "PartitionLostError",
    "NonDeterministicRebuildError", "TrainingFailedError", "CatalogError", "CatalogMissingError",
    "CatalogCorruptError", "CatalogVersionError", "CatalogUnavailableError",
]
