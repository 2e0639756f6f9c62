"""A watchdog that kills a JVM process group when its owner dies.

Killing a Ray actor with SIGKILL gives it no chance to stop the JVMs it started, and
PR_SET_PDEATHSIG fires when the *thread* that forked exits, which Java's process
launcher makes unreliable for the executor JVMs a Spark worker starts. So every JVM
ftbridge starts leads its own process group (the worker's executor JVMs inherit it), and
this small process, started beside it, polls the owner and kills the whole group with
SIGKILL once the owner is gone. It exits by itself once the group is empty.

Started with `spawn` (detached from the owner's process tree), or run as
``python -m ftbridge.cluster.reaper OWNER_PID PGID [WORK_DIR]``; WORK_DIR (the
JVM's scratch folder) is removed once the group is gone. The driver JVM PySpark starts is a
plain child of the driver (not a group of its own), and the driver can die before PySpark
hands back its pid (a SIGKILL or SIGTERM while the JVM starts leaves one that never exits:
its gateway thread runs, the connection file it wanted to write is gone). So
``--driver OWNER_PID DIR`` is started *before* that JVM: it waits for the owner to die, finds
the processes started with ``-Djava.io.tmpdir=DIR/tmp`` (the driver JVM, and Spark's launcher
if it was still running), gives them a moment to run their shutdown hooks (the driver JVM
exits when its stdin closes), kills what is left and removes DIR.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

POLL_SECONDS = 0.2


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state first); None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    fields = _stat(pid)
    return fields is not None and bool(fields) and fields[0] != b"Z"


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` runs (zombies do not count).

    A JVM a Spark worker started is orphaned when the worker dies; where PID 1 does not reap
    orphans (a container whose first process is `ray start`), it stays a zombie of the group
    for good, and a group of zombies must count as gone, or the folder is never removed.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stats = (_stat(int(e)) for e in os.listdir("/proc") if e.isdigit())
    return any(f and f[0] != b"Z" and f[2] == str(pgid).encode() for f in stats)


def start_ticks(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot; None if it does not run): a pid with other
    ticks is another process that reuses the number."""
    fields = _stat(pid)
    return fields[19].decode() if fields and len(fields) > 19 else None


class Owner:
    """The process a reaper watches, told apart from a later process with the same pid."""

    def __init__(self, pid: int) -> None:
        self.pid, self.ticks = pid, start_ticks(pid)

    def alive(self) -> bool:
        return self.ticks is not None and pid_alive(self.pid) and start_ticks(self.pid) == self.ticks


def spawn(args: list[str], timeout_s: float = 10.0) -> int:
    """Start a reaper (`args` as for `main`) detached from its owner's process tree; its pid.

    Not a child of the owner: Ray kills a dead worker's children, and `ray job stop` sends
    SIGTERM then SIGKILL to every descendant of a job's driver, which would take the reaper with
    the owner it is there to clean up after. A short-lived intermediate forks the reaper and
    exits, so the reaper belongs to init (or the nearest subreaper) and to a session of its own.
    """
    proc = subprocess.Popen([sys.executable, "-m", "ftbridge.cluster.reaper", "--detach", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"ftbridge's reaper did not start within {timeout_s:.0f}s") from None
    if proc.returncode != 0 or not out.strip().isdigit():
        raise RuntimeError(f"ftbridge's reaper did not start (exit {proc.returncode})")
    return int(out)


def _detach(argv: list[str]) -> int:
    """The intermediate of `spawn`: fork the reaper, print its pid, exit."""
    child = os.fork()
    if child:
        print(child, flush=True)
        os._exit(0)
    os.close(1)
    os.open(os.devnull, os.O_WRONLY)  # fd 1 again: nothing holds the caller's pipe open
    return main(argv)


def watch(owner_pid: int, pgid: int, work_dir: str | None = None) -> int:
    """Block until the owner dies (then kill the group) or the group empties."""
    owner = Owner(owner_pid)
    while True:  # bounded by the owner's and the group's lifetimes, polled
        if not group_alive(pgid):
            break
        if not owner.alive():
            _kill_and_wait(lambda: os.killpg(pgid, signal.SIGKILL), lambda: group_alive(pgid))
            break
        time.sleep(POLL_SECONDS)
    if work_dir:
        remove_tree(work_dir)
    return 0


def driver_marker(work_dir: str) -> str:
    """The option every process of a driver folder is started with (see `spark_on_ray.spark_conf`)."""
    return f"-Djava.io.tmpdir={os.path.join(work_dir, 'tmp')}"


def processes_with(marker: str) -> list[int]:
    """Live processes (other than this one) whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in args and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def end_processes(pids: list[int], grace_s: float) -> None:
    """Wait up to `grace_s` for `pids` to exit by themselves, then SIGKILL the rest (bounded)."""
    deadline = time.monotonic() + grace_s
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    for pid in pids:
        if pid_alive(pid):
            _kill_and_wait(lambda pid=pid: os.kill(pid, signal.SIGKILL), lambda pid=pid: pid_alive(pid))


def watch_driver(owner_pid: int, work_dir: str, grace_s: float = 20.0) -> int:
    """Block until the owner dies; then end its driver JVM (after `grace_s`) and remove `work_dir`."""
    owner = Owner(owner_pid)
    while owner.alive():  # bounded by the owner's lifetime
        time.sleep(POLL_SECONDS)
    end_processes(processes_with(driver_marker(work_dir)), grace_s)
    remove_tree(work_dir)
    return 0


def _kill_and_wait(kill, alive, timeout_s: float = 10.0) -> None:
    """Send the kill, then wait (bounded) until `alive()` is false."""
    try:
        kill()
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout_s
    while alive() and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)


def remove_tree(path: str) -> None:
    """Remove `path`, then its parents while empty, up to ftbridge's per-user temp root."""
    shutil.rmtree(path, ignore_errors=True)
    parent = os.path.dirname(os.path.abspath(path))
    remove_empty(parent, stop_at=os.path.join(tempfile.gettempdir(), f"ftbridge-{os.getuid()}"))


def remove_empty(path: str, stop_at: str) -> None:
    """rmdir `path` and its parents up to (not including) `stop_at`, while they are empty."""
    path, stop_at = os.path.abspath(path), os.path.abspath(stop_at)
    while path.startswith(stop_at + os.sep):
        try:
            os.rmdir(path)
        except OSError:
            return
        path = os.path.dirname(path)


def main(argv: list[str]) -> int:
    # The reaper must not die with the terminal's SIGINT, or a SIGTERM sent to the owner's whole
    # tree, before it has done its job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if argv[:1] == ["--detach"]:
        return _detach(argv[1:])
    if len(argv) in (3, 4) and argv[0] == "--driver":
        return watch_driver(int(argv[1]), argv[2], *(float(a) for a in argv[3:]))
    if len(argv) not in (2, 3):
        print("usage: python -m ftbridge.cluster.reaper OWNER_PID PGID [WORK_DIR]\n"
              "       python -m ftbridge.cluster.reaper --driver OWNER_PID DIR [GRACE_S]", file=sys.stderr)
        return 2
    return watch(int(argv[0]), int(argv[1]), argv[2] if len(argv) == 3 else None)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
