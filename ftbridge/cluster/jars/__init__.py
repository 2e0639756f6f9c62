"""ftbridge's jar for Spark: `SpillWriter.java` (the JVM half of the spill), compiled once and cached.

Writing a partition from the executor JVM keeps its Arrow bytes out of Python entirely
(about 0.4 s of a 4M-row conversion on 2 cores). The jar is built from source with the
`javac` of the Java that runs Spark, against the installed PySpark's jars, and cached by
source and Spark version; nothing is downloaded. Without a `javac` (a JRE only), or for
remote spill roots (`s3://`, ...), the Python writer (`convert/spill/write.py`) writes the same bytes.
`init_spark` puts the jar on Spark's class path; `convert/spill/batches.py` calls the class.
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

SOURCE = Path(__file__).with_name("SpillWriter.java")
SPILL_WRITER_CLASS = "ftbridge.spill.SpillWriter"
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
    key = hashlib.sha256(SOURCE.read_bytes() + spark_adapter.pyspark_version().encode() + java.encode()).hexdigest()[:16]
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
                            str(SOURCE)], check=True, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
            staged = os.path.join(tmp, "spill.jar")
            with zipfile.ZipFile(staged, "w") as zf:
                for path in sorted(Path(classes).rglob("*.class")):
                    zf.write(path, path.relative_to(classes).as_posix())
            shutil.move(staged, f"{jar}.tmp")
            os.replace(f"{jar}.tmp", jar)  # atomic: concurrent drivers never see half a jar
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        log.warning("could not compile %s (%s); spill files are written by Python workers (slower)",
                    SOURCE.name, detail.strip()[:2000])
        return None
    log.info("compiled %s into %s", SOURCE.name, jar)
    return str(jar)
