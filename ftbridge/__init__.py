"""ftbridge: a fault-tolerance-first bridge between Apache Spark and Ray.

Public names load lazily, so `import ftbridge.errors` (used by `lineage` and by Spark's
Python workers) does not pull in Ray, Spark and the engine.
"""

from __future__ import annotations

import importlib

from ftbridge.errors import *  # noqa: F401,F403

__version__ = "0.1.0"

_EXPORTS = {
    "ExecutorInfo": "ftbridge.cluster.session",
    "executors": "ftbridge.cluster.session",
    "init_spark": "ftbridge.cluster.session",
    "spark_session": "ftbridge.cluster.session",
    "stop_spark": "ftbridge.cluster.session",
    "conversion_id": "ftbridge.convert.engine",
    "from_spark": "ftbridge.convert.engine",
    "from_spark_recoverable": "ftbridge.convert.engine",
    "open_recoverable": "ftbridge.convert.engine",
    "release": "ftbridge.convert.engine",
    "to_spark": "ftbridge.convert.to_spark",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ftbridge' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
