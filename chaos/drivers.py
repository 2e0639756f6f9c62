"""Another driver on the same Ray cluster and catalog, as a real process: it starts (or joins) the
catalog's writer, reports the writer's pid, and exits or is SIGKILLed when told.

    python -m ftbridge.chaos.drivers RAY_ADDRESS CATALOG   (then a line on stdin: exit | sigkill | ray_shutdown)

`ray_shutdown` is a driver that calls `ray.shutdown()` and carries on: it waits a whole lease,
then says whether Ray is still down (no background call of ftbridge's may start it again).
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
import time

import ray

from ftbridge.chaos.faults import Fault, FaultLog
from ftbridge.common.config import settings
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.writer import start_writer

START_TIMEOUT_S = 120


class OtherDriver:
    """`python -m ftbridge.chaos.drivers` in a child process; `writer_pid` once it holds the writer."""

    def __init__(self, address: str, catalog: str, env: dict | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "ftbridge.chaos.drivers", address, catalog],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        line = self._line()
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"the other driver did not start the catalog writer (it said {line!r})")
        self.writer_pid = int(line)

    def _line(self) -> str:
        with selectors.DefaultSelector() as sel:
            sel.register(self.stdout, selectors.EVENT_READ)
            if not sel.select(START_TIMEOUT_S):
                self.proc.kill()
                raise TimeoutError(f"the other driver said nothing within {START_TIMEOUT_S}s")
        return self.stdout.readline()

    def shut_ray_down(self) -> bool:
        """Tell it to call `ray.shutdown()` and wait a lease; True when Ray stayed down there."""
        self.stdin.write("ray_shutdown\n")
        self.stdin.flush()
        answer = self._line().strip()
        code = self.proc.wait(timeout=60)
        if code != 0 or answer not in ("down", "up"):
            raise RuntimeError(f"the other driver said {answer!r} and ended with {code}")
        return answer == "down"

    def end(self, how: str, log: FaultLog) -> Fault:
        """`exit` (cleanly, its atexit hooks run) or `sigkill`; waits until it is gone."""
        self.stdin.write(how + "\n")
        self.stdin.flush()
        code = self.proc.wait(timeout=60)
        want = -signal.SIGKILL if how == "sigkill" else 0
        if code != want:
            raise RuntimeError(f"the other driver ended with {code}, not {want}")
        return log.add("driver_killed" if how == "sigkill" else "driver_exited", str(self.proc.pid),
                       writer_pid=self.writer_pid)


def main(argv: list[str]) -> int:
    address, catalog = argv
    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    print(start_writer(Catalog(catalog)).pid(), flush=True)
    how = sys.stdin.readline().strip()
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "ray_shutdown":
        ray.shutdown()
        time.sleep(settings().catalog_lease_s)  # three renewals' worth
        print("up" if ray.is_initialized() else "down", flush=True)
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
