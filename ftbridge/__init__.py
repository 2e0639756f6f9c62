"""ftbridge: a fault-tolerance-first bridge between Apache Spark and Ray.

The public API is `ftbridge.api`; its names load on first use, so `import ftbridge.errors`
(the CLI, Spark's Python workers) does not pay for importing Ray and PySpark.
"""

from __future__ import annotations

import importlib

from ftbridge.errors import *  # noqa: F403

__version__ = "0.1.0"

_API = ("AuditReport", "ConversionDetail", "ConversionSummary", "ExecutorInfo", "FitResult", "GcReport", "Health",
        "RecoverReport", "RunDetail", "RunSummary", "VerifyReport", "audit", "conversion_id", "executors",
        "fit_on_spark", "from_spark", "from_spark_recoverable", "gc", "init_spark", "open_recoverable", "recover",
        "release", "show", "spark_session", "stop_spark", "to_spark", "verify")

__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module("ftbridge.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ftbridge' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
