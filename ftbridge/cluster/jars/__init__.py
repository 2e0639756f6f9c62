"""ftbridge's jar for Spark: `SpillWriter.java` (the JVM half of the spill) and `SpillJob.java` (the
spill job, each partition's result handed over as its task ends), compiled once and cached.

Writing a partition from the executor JVM keeps its Arrow bytes out of Python entirely
(about 0.4 s of a 4M-row conversion on 2 cores). The jar is built from source with the
`javac` of the Java that runs Spark, against the installed PySpark's jars, and cached by
source and Spark version; nothing is downloaded. Without a `javac` (a JRE only), or for
remote spill roots (`s3://`, ...), the Python writer (`convert/spill/write.py`) writes the same bytes.
`init_spark` puts the jar on Spark's class path; a session it did not start gets it added when
it first converts (`writer_class`); `convert/spill/batches.py` calls the class.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from ftbridge.adapters import spark as spark_adapter
from ftbridge.cluster.jvm import java_home
from ftbridge.common.config import settings

log = logging.getLogger(__name__)

SOURCES = tuple(Path(__file__).with_name(name) for name in ("SpillWriter.java", "SpillJob.java"))
SPILL_WRITER_CLASS = "ftbridge.spill.SpillWriter"
SPILL_JOB_CLASS = "ftbridge.spill.SpillJob"
COMPILE_TIMEOUT_S = 180


def enabled() -> bool:
    """False when FTBRIDGE_SPILL_WRITER=python asks for the Python writer everywhere."""
    return settings().spill_writer != "python"


def cache_dir() -> Path:
    return Path(settings().jar_cache)


def _javac(java: str) -> str | None:
    beside = os.path.join(java_home(java), "bin", "javac")
    return beside if os.access(beside, os.X_OK) else shutil.which("javac")


def build_jar(java: str, spark_home: str) -> str | None:
    """Path of the spill-writer jar (compiled now if not cached), or None when it cannot be built."""
    sources = b"".join(src.read_bytes() for src in SOURCES)
    key = hashlib.sha256(sources + spark_adapter.pyspark_version().encode() + java.encode()).hexdigest()[:16]
    jar = cache_dir() / f"ftbridge-spill-{key}.jar"
    if jar.is_file():
        return str(jar)
    javac = _javac(java)
    if javac is None:
        log.info("no javac beside %s: spill files are written by Python workers (slower)", java)
        return None
    try:
        jar.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryDirectory(prefix="ftbridge-javac-") as tmp:
            classes = os.path.join(tmp, "classes")
            subprocess.run([javac, "-nowarn", "-cp", os.path.join(spark_home, "jars", "*"), "-d", classes,
                            *map(str, SOURCES)], check=True, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
            staged = os.path.join(tmp, "spill.jar")
            with zipfile.ZipFile(staged, "w") as zf:
                for path in sorted(Path(classes).rglob("*.class")):
                    zf.write(path, path.relative_to(classes).as_posix())
            shutil.move(staged, f"{jar}.tmp")
            os.replace(f"{jar}.tmp", jar)  # atomic: concurrent drivers never see half a jar
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        log.warning("could not compile %s (%s); spill files are written by Python workers (slower)",
                    "ftbridge's Java sources", detail.strip()[:2000])
        return None
    log.info("compiled %s into %s", ", ".join(src.name for src in SOURCES), jar)
    return str(jar)


# Spark application ids whose missing writer class was already reported (once per session).
_REPORTED: set[str] = set()


def writer_class(sc, target):
    """The JVM spill writer class for `target` in the session of `sc`, or None for Python workers.

    Sessions `init_spark` started have the jar on their class path. Any other session (one the
    user built, a Spark cluster that hosts Ray) gets it added now, once: compiled for the
    driver's Java against the installed PySpark, then `addJar` + the driver's class loader. Why a
    session writes with Python workers instead is logged once per session (a warning when it
    could have had the JVM writer).
    """
    if not jars_wanted(target):
        return None
    found = spark_adapter.jvm_class(sc, SPILL_WRITER_CLASS)
    if found is not None:
        return found
    app = str(sc.applicationId)
    if app in _REPORTED:
        return None
    _REPORTED.add(app)
    try:
        java = spark_adapter.driver_java(sc)
    except Exception as exc:  # Py4J: the driver JVM went away
        log.warning("spill files are written by Python workers (slower): the driver's Java is unknown (%s)", exc)
        return None
    jar = build_jar(java, spark_adapter.spark_home())
    if jar is None:  # build_jar said why
        return None
    why = spark_adapter.add_jar_to_running_session(sc, jar)
    found = spark_adapter.jvm_class(sc, SPILL_WRITER_CLASS) if why is None else None
    if found is None:
        log.warning("spill files are written by Python workers (slower): %s; start Spark with "
                    "spark.jars=%s to use the JVM writer", why or "the added jar's class does not resolve", jar)
        return None
    log.info("added the JVM spill writer %s to the running Spark session %s", jar, app)
    return found


def jars_wanted(target) -> bool:
    """The JVM writer serves local spill roots unless FTBRIDGE_SPILL_WRITER=python (said at debug)."""
    if not enabled():
        log.debug("FTBRIDGE_SPILL_WRITER=python: spill files are written by Python workers")
        return False
    if not target.is_local:
        log.debug("spill root %s is not local: spill files are written by Python workers", target.root)
        return False
    return True
