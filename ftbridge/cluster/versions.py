"""Installed releases that ftbridge refuses to combine, checked before Ray or any JVM starts.

pandas 3 changed string and datetime dtypes; PySpark supports it from 4.3 (SPARK-55139). With
an older PySpark, Spark's pandas paths (`toPandas`, pandas UDFs, `createDataFrame(pandas_df)`)
give other dtypes or fail inside Arrow, so `init_spark` refuses the pair up front, naming both
releases and what to install.
"""

from __future__ import annotations

from importlib import metadata

from ftbridge.common.errors import DependencyVersionError

PANDAS_3_SINCE_PYSPARK = (4, 3)


def _release(version: str) -> tuple[int, int]:
    parts = (version.split("+")[0].split(".") + ["0"])[:2]
    major, minor = (int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts)
    return major, minor


def check_pandas(pyspark_version: str, pandas_version: str | None) -> None:
    """Raise DependencyVersionError if `pandas_version` (None: not installed) cannot work with
    `pyspark_version`."""
    if pandas_version is None or _release(pandas_version)[0] < 3:
        return
    if _release(pyspark_version) >= PANDAS_3_SINCE_PYSPARK:
        return
    need = ".".join(map(str, PANDAS_3_SINCE_PYSPARK))
    raise DependencyVersionError(
        f"pandas {pandas_version} needs PySpark {need} or newer, and PySpark {pyspark_version} is installed. "
        f"Install a PySpark that supports it (pip install 'pyspark>={need}') or keep pandas 2 "
        f"(pip install 'pandas>=2.2,<3').", pyspark_version=pyspark_version, pandas_version=pandas_version)


def installed_pandas() -> str | None:
    """The installed pandas release, read without importing pandas (~0.3 s)."""
    try:
        return metadata.version("pandas")
    except metadata.PackageNotFoundError:
        return None
