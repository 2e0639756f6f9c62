"""Releases ftbridge refuses to combine: pandas 3 with a PySpark older than 4.3."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ftbridge.adapters.spark import pyspark_version
from ftbridge.cluster.versions import check_pandas, installed_pandas
from ftbridge.errors import ConfigurationError, DependencyVersionError
from tests.conftest import python_env


@pytest.mark.parametrize("pyspark, pandas", [("4.3.0", "3.0.0"), ("4.3.1", "3.1.1"), ("5.0.0", "3.1.1"),
                                             ("3.5.9", "2.3.3"), ("4.1.1", "2.2.2"), ("4.1.1", None)])
def test_pairs_that_work(pyspark, pandas):
    check_pandas(pyspark, pandas)


@pytest.mark.parametrize("pyspark", ["3.5.0", "4.0.5", "4.1.1", "4.2.1", "4.2.0.dev0"])
def test_pandas_3_with_an_older_pyspark_is_refused_naming_both(pyspark):
    with pytest.raises(DependencyVersionError) as err:
        check_pandas(pyspark, "3.0.1")
    assert isinstance(err.value, ConfigurationError) and not err.value.retryable
    assert "pandas 3.0.1" in str(err.value) and f"PySpark {pyspark}" in str(err.value)
    assert "pip install 'pyspark>=4.3'" in str(err.value) and "pip install 'pandas>=2.2,<3'" in str(err.value)
    assert (err.value.pyspark_version, err.value.pandas_version) == (pyspark, "3.0.1")


def test_the_installed_pair_is_accepted():
    check_pandas(pyspark_version(), installed_pandas())


REFUSE = """
import ray, ftbridge
try:
    ftbridge.init_spark("x", num_executors=1, executor_cores=1, executor_memory="512MB")
    print("STARTED")
except ftbridge.errors.DependencyVersionError as exc:
    print("REFUSED", ray.is_initialized(), exc)
"""


def test_init_spark_refuses_pandas_3_before_ray_starts(tmp_path):
    """A real pandas 3 distribution record first on the path (its metadata is what pip installs
    and what ftbridge reads) with the installed PySpark: refused up front, unless PySpark is 4.3+."""
    info = tmp_path / "pandas-3.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pandas\nVersion: 3.0.1\n")
    env = python_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    env.pop("RAY_ADDRESS", None)
    if tuple(int(p) for p in pyspark_version().split(".")[:2]) >= (4, 3):
        code = "from ftbridge.cluster.versions import *; check_pandas(__import__('pyspark').__version__, " \
               "installed_pandas()); print('ACCEPTED', installed_pandas())"
        want = "ACCEPTED 3.0.1"
    else:
        code, want = REFUSE, "REFUSED False"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(want), proc.stdout + proc.stderr[-2000:]
