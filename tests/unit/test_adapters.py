"""The private engine APIs ftbridge uses are all there on the installed releases.

Each adapter module lists the names it relies on; a release that moves one fails here with
the version in the message, before a conversion fails somewhere deeper.
"""

from __future__ import annotations

import ast
import pathlib

import pyarrow as pa
import pytest

from ftbridge.adapters import ray as ray_adapter
from ftbridge.adapters import spark as spark_adapter

pytestmark = pytest.mark.core
ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_pyspark_private_names_exist():
    missing = spark_adapter.check()
    assert not missing, (f"PySpark {spark_adapter.pyspark_version()} lacks {missing}; ftbridge's Spark adapter "
                         f"was checked against {spark_adapter.TESTED}. Update ftbridge/adapters/spark.py.")


def test_ray_data_names_exist():
    missing = ray_adapter.check()
    assert not missing, (f"Ray {ray_adapter.ray_version()} lacks {missing}; ftbridge's Ray adapter was checked "
                         f"against {ray_adapter.TESTED}. Update ftbridge/adapters/ray.py.")


def test_installed_releases_are_in_the_tested_range():
    spark_minor = ".".join(spark_adapter.pyspark_version().split(".")[:2])
    ray_minor = ".".join(ray_adapter.ray_version().split(".")[:2])
    assert spark_minor in spark_adapter.TESTED, f"PySpark {spark_minor} is not in the tested matrix"
    low, high = ray_adapter.TESTED
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(low) <= as_tuple(ray_minor) <= as_tuple(high), f"Ray {ray_minor} is outside {low}-{high}"


def test_read_task_carries_metadata_and_schema():
    schema = pa.schema([("x", pa.int64())])
    task = ray_adapter.read_task(lambda: [pa.table({"x": [1, 2]})], num_rows=2, size_bytes=16, schema=schema)
    assert task.metadata.num_rows == 2 and task.metadata.size_bytes == 16
    assert [t.num_rows for t in task()] == [2]


def test_private_engine_calls_stay_in_the_adapters():
    """No module outside ftbridge/adapters touches Py4J handles or Ray Data internals."""
    private = ("_jdf", "_jvm", "_jsc", "_jconf", "_getJavaStorageLevel", "_collect_as_arrow", "_find_spark_home")
    offenders = []
    for path in [*ROOT.glob("ftbridge/**/*.py"), *ROOT.glob("ftbridge/common/**/*.py"), *ROOT.glob("lineage/**/*.py"),
                 *ROOT.glob("chaos/**/*.py")]:
        if "adapters" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in private:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} import {n}" for n in names
                              if n.startswith(("ray.data._internal", "pyspark.sql.pandas"))]
    assert not offenders, offenders


@pytest.mark.parametrize("spark", [(3, 5), (4, 1)])
def test_java_check_refuses_a_runtime_without_spark_modules(tmp_path, spark):
    """A fake `java` that reports Java 17 without jdk.incubator.vector / java.sql is refused up front."""
    from ftbridge.cluster import java_runtime
    from ftbridge.errors import JavaRuntimeError

    java = tmp_path / "java"
    java.write_text('#!/bin/sh\nif [ "$1" = "-version" ]; then echo \'openjdk version "17.0.15" 2025-04-15\' >&2; '
                    'else echo "java.base@17.0.15"; fi\n')
    java.chmod(0o755)
    with pytest.raises(JavaRuntimeError, match="java.sql") as err:
        java_runtime.check(str(java), spark_adapter.spark_home(), spark)
    assert "java.sql" in err.value.missing_modules


def test_java_check_refuses_a_version_out_of_range(tmp_path):
    from ftbridge.cluster import java_runtime
    from ftbridge.errors import JavaRuntimeError

    java = tmp_path / "java"
    java.write_text('#!/bin/sh\necho \'openjdk version "11.0.2" 2019-01-15\' >&2\n')
    java.chmod(0o755)
    with pytest.raises(JavaRuntimeError, match="Java 17-21.*Java 11"):
        java_runtime.check(str(java), spark_adapter.spark_home(), (4, 1))


def test_read_tasks_of_many_partitions_have_a_named_read_function():
    """Ray Data names a large read function by __name__ (10,000 partitions in 2 tasks made a bare
    functools.partial crash the read)."""
    from ftbridge.convert.partition import PartitionRef, ReadContext
    from ftbridge.convert.read.datasource import SpillDatasource
    from ftbridge.convert.spill.target import SpillTarget

    target = SpillTarget.resolve(None)
    refs = [PartitionRef("c" * 32, i, f"/spill/{i}.arrow", "n" * 56, 100, 4096, "x" * 32, target)
            for i in range(10_000)]
    source = SpillDatasource(refs, ReadContext("t", None, None, pa.schema([("id", pa.int64())])), num_tasks=2)
    tasks = source.get_read_tasks(2)
    assert len(tasks) == 2 and [t.read_fn.__name__ for t in tasks] == ["read_group", "read_group"]
    assert sum(t.metadata.num_rows for t in tasks) == 1_000_000
