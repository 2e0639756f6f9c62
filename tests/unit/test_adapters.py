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
from tests.syntax import parse

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


# The engine boundary, read from the source (AST). A value is a JVM handle when it comes from a
# private Py4J attribute (`_jvm`, `_jdf`, `_jrdd`, `_jsc`, any `_j*`, `_gateway`), from a method
# call, attribute, item or getattr of a JVM handle, from a private method of another object
# (`sc._getJavaStorageLevel(...)`), or from an adapter function that returns one
# (found the same way, by reading the adapter). Outside ftbridge/adapters/ no code may touch a
# private Py4J attribute, call a method of a JVM handle or construct a JVM class, or import a
# private module of an engine (a dotted path with a `_` part: ray.data._internal, ...).
ENGINES = ("ray", "pyspark", "pyarrow", "py4j", "duckdb")


def _is_py4j_attribute(name: str) -> bool:
    return (name.startswith("_j") and len(name) > 2) or name == "_gateway"


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


class _JvmTaint(ast.NodeVisitor):
    """One module: which names hold JVM handles, and where the code calls into the JVM."""

    def __init__(self, jvm_functions: dict[str, set[str]]) -> None:
        self.jvm_functions = jvm_functions  # module -> its functions that return a JVM handle
        self.aliases: dict[str, str] = {}   # local name -> a module, or module.function
        self.tainted: set[str] = set()      # dotted names bound to a JVM handle
        self.calls: list[tuple[int, str]] = []
        self.attributes: list[tuple[int, str]] = []
        self.returns_jvm: set[str] = set()
        self._function: list[str] = []

    def is_jvm(self, node: ast.AST | None) -> bool:
        if node is None:
            return False
        if isinstance(node, ast.Attribute):
            return _is_py4j_attribute(node.attr) or self.is_jvm(node.value) or _dotted(node) in self.tainted
        if isinstance(node, ast.Name):
            return node.id in self.tainted
        if isinstance(node, ast.Subscript):
            return self.is_jvm(node.value)
        if isinstance(node, ast.IfExp):
            return self.is_jvm(node.body) or self.is_jvm(node.orelse)
        if isinstance(node, (ast.Tuple, ast.List)):
            return any(self.is_jvm(element) for element in node.elts)
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "getattr" and node.args:
                return self.is_jvm(node.args[0])
            if self.is_jvm(node.func):
                return True
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr.startswith("_") and not func.attr.startswith("__")
                    and _dotted(func.value) not in ("self", "cls")):
                return True  # a private method of PySpark's (sc._getJavaStorageLevel): a JVM handle
            target = _dotted(node.func)
            if target is None:
                return False
            head, _, rest = target.partition(".")
            resolved = self.aliases.get(head, head) + (f".{rest}" if rest else "")
            module, _, function = resolved.rpartition(".")
            return function in self.jvm_functions.get(module, set())
        return False

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for a in node.names:
            self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"

    def _bind(self, target: ast.AST, jvm: bool) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._bind(element, jvm)
        elif jvm and _dotted(target):
            self.tainted.add(_dotted(target))

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        for target in node.targets:
            self._bind(target, self.is_jvm(node.value))

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.generic_visit(node)
        self._bind(node.target, self.is_jvm(node.value))

    def visit_For(self, node: ast.For) -> None:
        self._bind(node.target, self.is_jvm(node.iter))
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function.append(node.name)
        self.generic_visit(node)
        self._function.pop()

    def visit_Return(self, node: ast.Return) -> None:
        self.generic_visit(node)
        if self._function and self.is_jvm(node.value):
            self.returns_jvm.add(self._function[-1])

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _is_py4j_attribute(node.attr):
            self.attributes.append((node.lineno, f".{node.attr}"))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if self.is_jvm(node.func):
            self.calls.append((node.lineno, ast.unparse(node.func)))
        self.generic_visit(node)


def _taint(source: str, jvm_functions: dict[str, set[str]]) -> _JvmTaint:
    """Two passes, so a name bound to a JVM handle late in the file counts everywhere in it."""
    tree = parse(source)
    first = _JvmTaint(jvm_functions)
    first.visit(tree)
    second = _JvmTaint(jvm_functions)
    second.tainted = set(first.tainted)
    second.visit(tree)
    return second


def _adapter_jvm_functions() -> dict[str, set[str]]:
    return {"ftbridge.adapters.spark": _taint((ROOT / "ftbridge/adapters/spark.py").read_text(), {}).returns_jvm}


def boundary_offences(source: str, jvm_functions: dict[str, set[str]]) -> list[str]:
    found = _taint(source, jvm_functions)
    out = [f"{line} {name}" for line, name in found.attributes]
    out += [f"{line} calls {name}" for line, name in found.calls]
    for node in ast.walk(parse(source)):
        names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
                 [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        out += [f"{node.lineno} import {n}" for n in names if n.split(".")[0] in ENGINES
                and any(part.startswith("_") for part in n.split("."))]
    return sorted(set(out), key=lambda s: int(s.split()[0]))


def test_the_adapter_reading_finds_the_functions_that_return_jvm_handles():
    found = _adapter_jvm_functions()["ftbridge.adapters.spark"]
    assert {"arrow_batch_rdd", "jvm_class", "java_storage_level"} <= found, found
    assert "bytes_rdd" not in found and "pyspark_version" not in found, found


@pytest.mark.parametrize("code, offence", [
    ("def f(df):\n    return df._jdf.schema()\n", "._jdf"),
    ("from ftbridge.adapters import spark as a\ndef f(df):\n    rdd, _ = a.arrow_batch_rdd(df, 1, 'UTC', False)\n"
     "    return rdd.getNumPartitions()\n", "calls rdd.getNumPartitions"),
    ("from ftbridge.adapters.spark import jvm_class\ndef f(sc):\n    writer = jvm_class(sc, 'a.B')\n"
     "    return writer('root', True)\n", "calls writer"),
    ("class C:\n    def __init__(self, jrdd):\n        self.h = jrdd\n    def g(self, df):\n"
     "        self.k = df.sparkSession._jsparkSession\n        return self.k.version()\n", "calls self.k.version"),
    ("from ray.data._internal.util import x\n", "import ray.data._internal.util"),
])
def test_the_boundary_guard_catches_each_kind_of_private_call(code, offence):
    offences = boundary_offences(code, _adapter_jvm_functions())
    assert any(offence in o for o in offences), offences


def test_private_engine_calls_stay_in_the_adapters():
    """No module outside ftbridge/adapters touches Py4J handles, calls the JVM or imports an
    engine's private modules (see `boundary_offences`)."""
    jvm_functions = _adapter_jvm_functions()
    offenders = []
    for path in [*ROOT.glob("ftbridge/**/*.py"), *ROOT.glob("lineage/**/*.py"), *ROOT.glob("chaos/**/*.py")]:
        if "adapters" in path.relative_to(ROOT).parts:
            continue
        offenders += [f"{path.relative_to(ROOT)}:{o}" for o in boundary_offences(path.read_text(), jvm_functions)]
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
