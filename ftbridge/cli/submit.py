"""`ftbridge submit`: spark-submit of a PySpark script onto Spark on Ray.

Connects to Ray (`--address`, else RAY_ADDRESS, else a local embedded Ray), starts Spark on
it, runs the script in this process as `__main__` with its arguments (so its
`SparkSession.builder.getOrCreate()` returns the Ray-backed session), then stops Spark and
Ray and returns the script's exit code. Ctrl-C and SIGTERM end the script with
KeyboardInterrupt / SystemExit, so the same cleanup runs; a SIGKILL is handled by the
reapers (no JVM outlives this process).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import traceback

import ray

import ftbridge
from ftbridge.cluster.spark_on_ray import ensure_ray
from ftbridge.common.errors import ConfigurationError

SIGTERM_EXIT = 128 + signal.SIGTERM


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _on_sigterm(signum, frame):
    raise SystemExit(SIGTERM_EXIT)


def run_submit(script: str, args: list[str], *, address: str | None, num_executors: int, executor_cores: int,
               executor_memory: str, executor_cpus: float | None, configs: dict[str, str],
               app_name: str | None, min_executors: int | None = None, max_executors: int | None = None,
               encrypt: bool = False) -> int:
    """Run `script` on Spark on Ray; return its exit code."""
    path = os.path.abspath(script)
    if not os.path.isfile(path):
        raise ConfigurationError(f"no script at {script!r}")
    if address:
        os.environ["RAY_ADDRESS"] = address
    started_ray = not ray.is_initialized()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        ensure_ray()
        signal.signal(signal.SIGTERM, _on_sigterm)  # after ray.init, which installs its own
        ftbridge.init_spark(app_name or os.path.splitext(os.path.basename(path))[0], num_executors=num_executors,
                            executor_cores=executor_cores, executor_memory=executor_memory, configs=configs,
                            executor_cpus=executor_cpus, min_executors=min_executors, max_executors=max_executors,
                            encrypt=encrypt)
        return _run_script(path, args)
    finally:
        try:
            ftbridge.stop_spark()
        finally:
            if started_ray:
                ray.shutdown()
            signal.signal(signal.SIGTERM, previous)


def _run_script(path: str, args: list[str]) -> int:
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(path))
    try:
        runpy.run_path(path, run_name="__main__")
        return 0
    except SystemExit as exc:
        return _exit_code(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BaseException:  # the script's own error: shown as Python would, exit code 1
        traceback.print_exc()
        return 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
