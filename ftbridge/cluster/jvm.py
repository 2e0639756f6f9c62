"""Finding Java and Spark, and starting Spark's own daemons as reaped process groups."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ftbridge.adapters.spark import spark_home
from ftbridge.cluster import java_runtime
from ftbridge.cluster.reaper import group_alive, pid_alive, spawn
from ftbridge.common.config import settings
from ftbridge.common.errors import ClusterStartTimeoutError, ConfigurationError

log = logging.getLogger(__name__)

# Spark 4 on Java 17/21 needs these for Arrow, Netty and Kryo; Spark adds most itself for
# the driver and executors, but not for standalone daemons, and older releases miss some.
ADD_OPENS = [
    "java.base/java.lang",
    "java.base/java.lang.invoke",
    "java.base/java.lang.reflect",
    "java.base/java.io",
    "java.base/java.net",
    "java.base/java.nio",
    "java.base/java.util",
    "java.base/java.util.concurrent",
    "java.base/java.util.concurrent.atomic",
    "java.base/jdk.internal.ref",
    "java.base/sun.nio.ch",
    "java.base/sun.nio.cs",
    "java.base/sun.security.action",
    "java.base/sun.util.calendar",
    "java.security.jgss/sun.security.krb5",
    "java.base/jdk.internal.misc",
]
JAVA_OPTS = " ".join(
    # No hsperfdata_<user>/<pid> files: a SIGKILLed JVM would leave its file in /tmp.
    ["-XX:+IgnoreUnrecognizedVMOptions", "-XX:-UsePerfData"]
    + [f"--add-opens={m}=ALL-UNNAMED" for m in ADD_OPENS]
    + ["-Dio.netty.tryReflectionSetAccessible=true", "-Djava.net.preferIPv4Stack=true"]
)

_INSTALL_HINT = (
    "Install a Java 17 or 21 runtime (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`) "
    "or set JAVA_HOME to one."
)


def find_java() -> str:
    """Return the path of the `java` binary, or raise ConfigurationError saying what to install."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    found = shutil.which("java")
    if not found:
        raise ConfigurationError(f"no Java runtime found (JAVA_HOME unset, no `java` on PATH). {_INSTALL_HINT}")
    return found


def java_home(java: str) -> str:
    return str(Path(os.path.realpath(java)).parent.parent)


def check_java_for_spark() -> str:
    """Find Java and check it can run the installed Spark (version, modules); return its path."""
    java = find_java()
    java_runtime.check(java, spark_home())
    return java


# Master and worker daemons only coordinate: the C1 compiler alone and a serial collector
# start them with a third of the CPU (the executors they launch keep the defaults).
DAEMON_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def session_opts() -> str:
    """Extra flags of the driver's and executors' JVMs: DAEMON_OPTS under FTBRIDGE_JVM_PROFILE=small."""
    return DAEMON_OPTS if settings().jvm_profile == "small" else ""


def daemon_env(java: str, work_dir: str, extra: dict[str, str] | None = None, jvm_opts: str = "") -> dict[str, str]:
    """Environment for Spark daemons: Java flags, the driver's Python, temp files in `work_dir`.

    The daemon's JVM, the executor JVM a worker starts and that executor's Python workers all
    inherit it, so their temp files (java.io.tmpdir, TMPDIR: native libraries, `spark-*`
    folders) and the executor's local dirs (`blockmgr-*`, shuffle and persisted blocks) stay
    in `work_dir`, which the reaper removes.
    """
    tmp, local = os.path.join(work_dir, "tmp"), os.path.join(work_dir, "local")
    for path in (tmp, local):
        os.makedirs(path, mode=0o700, exist_ok=True)
    env = dict(os.environ)
    tool_opts = " ".join(o for o in (env.get("JAVA_TOOL_OPTIONS"), f"-Djava.io.tmpdir={tmp}", "-XX:-UsePerfData")
                         if o)
    env.update(
        {
            "JAVA_HOME": java_home(java),
            "SPARK_HOME": spark_home(),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_DAEMON_JAVA_OPTS": f"{JAVA_OPTS} {DAEMON_OPTS} {jvm_opts}".rstrip(),
            "SPARK_DAEMON_MEMORY": "256m",
            "SPARK_NO_DAEMONIZE": "1",
            "SPARK_LOCAL_DIRS": local,
            "TMPDIR": tmp,
            "JAVA_TOOL_OPTIONS": tool_opts,
        }
    )
    env.update(extra or {})
    return env


@dataclass
class JvmProcess:
    """A JVM we started: it leads its own process group and a reaper watches its owner."""

    popen: subprocess.Popen
    reaper: int   # the reaper's pid (not a child: see reaper.spawn)
    log_path: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the whole group, then SIGKILL what is left after `grace_s`."""
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and group_alive(self.popen.pid):
                self.popen.poll()
                time.sleep(0.1)
            if not group_alive(self.popen.pid):
                break
        self.popen.poll()
        deadline = time.monotonic() + 5
        while pid_alive(self.reaper) and time.monotonic() < deadline:  # it exits once the group is gone
            time.sleep(0.1)
        if pid_alive(self.reaper):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.reaper, signal.SIGKILL)

    def log_tail(self, lines: int = 20) -> str:
        return file_tail(self.log_path, lines)


def file_tail(path: str, lines: int = 20) -> str:
    """The last `lines` lines of a log file ("" if it cannot be read)."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def launch(args: list[str], env: dict[str, str], log_path: str, work_dir: str | None = None) -> JvmProcess:
    """Start `spark-class ARGS` as a new process group with a reaper bound to this process.

    The reaper removes `work_dir` once the JVMs are gone, however they ended.
    """
    cmd = [os.path.join(env["SPARK_HOME"], "bin", "spark-class"), *args]
    log_file = open(log_path, "ab")
    try:
        popen = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=os.path.dirname(log_path),
        )
    finally:
        log_file.close()
    try:
        # Ray kills a dead worker's process group and children; the reaper must outlive them.
        reaper = spawn([str(os.getpid()), str(popen.pid)] + ([work_dir] if work_dir else []))
    except RuntimeError:
        os.killpg(popen.pid, signal.SIGKILL)  # nothing would end this JVM after its owner
        raise
    log.debug("started %s (pid %d, log %s)", args[0], popen.pid, log_path)
    return JvmProcess(popen, reaper, log_path)


def wait_for(predicate, timeout_s: float, what: str, proc: JvmProcess | None = None) -> None:
    """Poll `predicate` until true; raise ClusterStartTimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and not proc.alive():
            raise ClusterStartTimeoutError(
                f"{what}: the JVM exited with code {proc.popen.returncode}. Log tail:\n{proc.log_tail()}",
                log_path=proc.log_path,
            )
        time.sleep(0.2)
    tail = proc.log_tail() if proc else ""
    raise ClusterStartTimeoutError(
        f"{what}: not ready after {timeout_s:.0f}s. Check the log"
        + (f" {proc.log_path}:\n{tail}" if proc else "."),
    )


def children(pid: int) -> list[int]:
    """Direct children of `pid`, read from /proc."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) == pid:
                kids.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def parse_memory(value: str | int) -> int:
    """'1GB', '512m', '2g', 1073741824 -> bytes."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(value).lower())
    if not match:
        raise ConfigurationError(f"cannot read memory size {value!r}; use e.g. '512MB', '1g' or '2GB'")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[match.group(2)]
    return int(float(match.group(1)) * scale)
