"""Class data sharing for Spark's JVMs: Spark's classes mapped from one archive, not loaded each start.

A Spark JVM spends most of its start loading and verifying some 10,000 classes from 290 jars;
on a 2-core machine six of them start at once in `init_spark` (driver, master, a worker and an
executor per executor actor). Java's class data sharing (CDS) maps those classes from an
archive instead: the master reaches its port in 0.9 s instead of 1.9 s and uses a third of
the CPU.

How the archive comes to be, per Java runtime and Spark installation (the cache key):

1. A session finds no archive: its JVMs record the classes they load
   (`-XX:DumpLoadedClassList`) into the cache, one list per role. Only one session records
   at a time (a lock the recording driver holds); others just run without sharing.
2. When that session stops (or a later one starts and finds complete lists), the lists are
   merged and `java -Xshare:dump` writes the archive (~10-20 s, once), atomically.
3. Every later JVM of any role starts with `-XX:SharedArchiveFile=...`; with `-Xshare:auto`
   a JVM whose class path or runtime does not match just starts without it.

A failed dump is remembered (with its output) and not retried for that key.
`FTBRIDGE_CDS=off` turns all of it off. Executor actors on other nodes use the archive only
where the same cache path holds one; elsewhere their JVMs start as before.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import logging
import os
import shutil
import subprocess
import time
from functools import lru_cache
from pathlib import Path

from ftbridge.cluster.jvm import cmdline as jvm_cmdline
from ftbridge.common.config import settings

log = logging.getLogger(__name__)

DUMP_TIMEOUT_S = 300
KEEP_OTHER_ARCHIVES = 2  # ~150 MB each: archives of other Java/Spark installs beyond these go
ROLES = ("driver", "executor", "master", "worker")
# A driver JVM started before the recording session (an earlier session of the same process)
# records nothing; the others must have.
REQUIRED_ROLES = ("executor", "master", "worker")


def enabled() -> bool:
    return settings().cds != "off"


def class_path(spark_home: str) -> list[str]:
    """The jars every Spark JVM has on its class path, in the order the launcher expands them."""
    return sorted(glob.glob(os.path.join(spark_home, "jars", "*.jar")))


@lru_cache(maxsize=8)
def _key(java: str, spark_home: str) -> str:
    h = hashlib.sha256(os.path.realpath(java).encode())
    try:
        st = os.stat(os.path.realpath(java))
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    except OSError:
        pass
    for jar in class_path(spark_home):
        st = os.stat(jar)
        h.update(f"{os.path.basename(jar)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


class ClassShare:
    """The CDS state for one (Java, Spark) pair: use the archive, record class lists, or nothing."""

    def __init__(self, java: str, spark_home: str) -> None:
        self.java = java
        self.spark_home = spark_home
        self.dir = Path(settings().cache_root) / "cds" / _key(java, spark_home)
        self.archive = self.dir / "spark.jsa"
        self.lists = self.dir / "lists"
        self.failed = self.dir / "failed.txt"
        self._lock_fd: int | None = None
        self.mode = "off"
        if not enabled() or self.failed.exists():
            return
        try:
            if not self.archive.is_file() and self._lists_complete():
                self.build()
        except OSError as exc:  # an unwritable cache: start without sharing
            log.warning("class data sharing off: cannot build in %s (%s)", self.dir, exc)
            return
        if self.archive.is_file():
            self.mode = "use"
            try:
                os.utime(self.archive)  # its mtime says when it was last used (see _prune_others)
            except OSError:
                pass
        elif self._take_recording_lock():
            self.mode = "record"

    # -- options for each JVM ----------------------------------------------------------------
    def java_opts(self, role: str, tag: str = "") -> str:
        """JVM options for a JVM of `role` ('' when sharing is off). `tag` names its list."""
        if self.mode == "use":
            return f"-XX:SharedArchiveFile={self.archive} -Xshare:auto"
        if self.mode == "record":
            return f"-XX:DumpLoadedClassList={self.lists}/{role}{'-' + tag if tag else ''}.lst"
        return ""

    # -- recording ---------------------------------------------------------------------------
    def _take_recording_lock(self) -> bool:
        try:
            self.lists.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.dir / "record.lock", os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            log.debug("class data sharing off: cannot use %s (%s)", self.dir, exc)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another driver is recording right now
            os.close(fd)
            return False
        for old in self.lists.glob("*.lst"):  # a half-done recording of a killed session
            old.unlink(missing_ok=True)
        self._lock_fd = fd
        return True

    def _lists_complete(self) -> bool:
        if not (self.lists / "classpath.txt").is_file():
            return False
        names = [p.name for p in self.lists.glob("*.lst") if p.stat().st_size > 0]
        return all(any(n.startswith(role) for n in names) for role in REQUIRED_ROLES)

    def finish(self) -> None:
        """After the session's JVMs are gone: build the archive from what they recorded."""
        if self.mode != "record":
            return
        try:
            if self._lists_complete():
                self.build()
            else:
                log.debug("class lists incomplete in %s; the next session records again", self.lists)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            self.mode = "off"

    # -- building ----------------------------------------------------------------------------
    def save_class_path(self, jvm_pid: int) -> None:
        """Keep the class path of a JVM ftbridge started (the master's): the archive must be dumped
        with exactly the class path its users start with (the launcher's order of `jars/*`)."""
        if self.mode != "record":
            return
        args = jvm_cmdline(jvm_pid)
        if "-cp" in args:
            (self.lists / "classpath.txt").write_text(args[args.index("-cp") + 1])

    def _merged_list(self) -> Path:
        seen: dict[str, None] = {}
        for path in sorted(self.lists.glob("*.lst")):
            text = path.read_text(errors="replace")
            if not text.endswith("\n"):  # a JVM killed mid-write leaves a torn last line
                text = text[: text.rfind("\n") + 1]
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    seen.setdefault(line, None)
        merged = self.dir / "classes.lst"
        merged.write_text("\n".join(seen) + "\n")
        return merged

    def build(self) -> bool:
        """Write the archive (under a lock, atomically); on failure remember why and return False."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.dir / "build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.archive.is_file():
                return True
            t0 = time.monotonic()
            merged = self._merged_list()
            staged = self.dir / f"spark.jsa.{os.getpid()}.tmp"
            cmd = [self.java, "-Xshare:dump", f"-XX:SharedClassListFile={merged}",
                   f"-XX:SharedArchiveFile={staged}", "-XX:-UsePerfData",
                   "-cp", (self.lists / "classpath.txt").read_text()]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DUMP_TIMEOUT_S,
                                      stdin=subprocess.DEVNULL)
                ok = proc.returncode == 0 and staged.is_file()
                output = proc.stdout + proc.stderr
            except (OSError, subprocess.TimeoutExpired) as exc:
                ok, output = False, str(exc)
            if not ok:
                staged.unlink(missing_ok=True)
                self.failed.write_text(f"{' '.join(cmd)}\n\n{output[-20000:]}")
                log.warning("could not build the class-sharing archive for Spark's JVMs (see %s); "
                            "JVMs start without it", self.failed)
                return False
            os.replace(staged, self.archive)
            shutil.rmtree(self.lists, ignore_errors=True)
            merged.unlink(missing_ok=True)
            log.info("built the class-sharing archive %s in %.1fs", self.archive, time.monotonic() - t0)
        self._prune_others()
        return True

    def _prune_others(self) -> None:
        """Drop the archives of Java/Spark installs not used lately (a Spark upgrade leaves one)."""
        def last_used(d: Path) -> float:
            try:
                return (d / "spark.jsa").stat().st_mtime
            except OSError:
                return d.stat().st_mtime

        others = sorted((d for d in self.dir.parent.iterdir() if d.is_dir() and d != self.dir),
                        key=last_used, reverse=True)
        for old in others[KEEP_OTHER_ARCHIVES:]:
            shutil.rmtree(old, ignore_errors=True)
            log.info("removed the class-sharing archive of another Java/Spark install: %s", old)
