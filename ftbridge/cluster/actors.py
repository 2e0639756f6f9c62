"""Ray actors that host Spark's own standalone master and workers.

One executor actor runs one Spark standalone Worker JVM sized to exactly one executor, so
Ray's scheduler decides where executors go and what they may use. When Ray restarts a dead
executor actor, its new worker registers with the master and Spark starts a fresh executor.
"""

from __future__ import annotations

import logging
import os
import time

import ray

from ftbridge.cluster import auth, jvm, net, scratch
from ftbridge.common.config import EXECUTOR_ACTOR_ENV, EXECUTOR_NODE_ENV

log = logging.getLogger(__name__)


def _node_ip() -> str:
    return ray.util.get_node_ip_address()


def _work_dir(kind: str, name: str) -> str:
    scratch.sweep()
    return scratch.make_owned_dir(os.path.join(scratch.root(), "spark", kind), f"{name}-")


def _log_says(path: str, text: str) -> bool:
    """Whether a daemon's log (its INFO lines) holds `text` yet."""
    try:
        with open(path, errors="replace") as f:
            return text in f.read()
    except OSError:
        return False


class SparkMaster:
    """Hosts the Spark standalone master JVM. Asks Ray for no CPU: it only coordinates."""

    def __init__(self, port: int, java: str, start_timeout_s: float, jvm_opts: str = "",
                 requested_at: float | None = None, secret: str = "") -> None:
        self.timings = {"ray_worker_s": time.time() - requested_at if requested_at else None}
        t0 = time.monotonic()
        self.host = _node_ip()
        self.port = port
        self.dir = _work_dir("master", f"master-{port}")
        env = jvm.daemon_env(java, self.dir, {"SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
                                              **auth.daemon_env(secret)}, jvm_opts)
        self.proc = jvm.launch(
            ["org.apache.spark.deploy.master.Master", "--host", self.host, "--port", str(port),
             "--webui-port", "0"],
            env, os.path.join(self.dir, "master.log"), work_dir=self.dir,
        )
        # Ready once elected leader, not once listening: until then the master ignores an
        # application's registration (the driver's SparkContext retries only after 20 s) and
        # tells workers it is in standby (they retry after 5-15 s).
        jvm.wait_for(lambda: net.port_open(self.host, port) and self._alive(), start_timeout_s,
                     f"Spark master on {self.host}:{port}", self.proc)
        self.timings["jvm_s"] = time.monotonic() - t0

    def _alive(self) -> bool:
        return _log_says(self.proc.log_path, "I have been elected leader!")

    def info(self) -> dict:
        return {"url": f"spark://{self.host}:{self.port}", "actor_pid": os.getpid(), "log_path": self.proc.log_path,
                "jvm_pid": self.proc.pid, "node_id": ray.get_runtime_context().get_node_id(),
                "timings": self.timings}

    def shutdown(self) -> None:
        self.proc.stop()


class SparkExecutor:
    """Hosts one Spark standalone Worker JVM that runs exactly one executor."""

    def __init__(self, name: str, master_url: str, cores: int, memory_mb: int, java: str,
                 start_timeout_s: float, jvm_opts: str = "", requested_at: float | None = None,
                 secret: str = "") -> None:
        self.timings = {"ray_worker_s": time.time() - requested_at if requested_at else None}
        t0 = time.monotonic()
        self.name = name
        self.node_id = ray.get_runtime_context().get_node_id()
        self.dir = _work_dir("worker", name)
        # Started together with the master: a worker JVM that finds no master retries only
        # after 5-15 s, so the JVM starts once the master listens.
        master_host, master_port = master_url.removeprefix("spark://").rsplit(":", 1)
        jvm.wait_for(lambda: net.port_open(master_host, int(master_port)), start_timeout_s,
                     f"Spark master {master_url} (executor actor {name} waits for it)")
        self.timings["master_wait_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        env = jvm.daemon_env(java, self.dir, {
            EXECUTOR_NODE_ENV: self.node_id,
            EXECUTOR_ACTOR_ENV: name,
            "SPARK_WORKER_DIR": self.dir,
            **auth.daemon_env(secret),
        }, jvm_opts)
        self.proc = jvm.launch(
            ["org.apache.spark.deploy.worker.Worker", "--host", _node_ip(), "--cores", str(cores),
             "--memory", f"{memory_mb}m", "--work-dir", self.dir, "--webui-port", "0", master_url],
            env, os.path.join(self.dir, "worker.log"), work_dir=self.dir,
        )
        jvm.wait_for(self._registered, start_timeout_s, f"Spark worker {name} registering with {master_url}",
                     self.proc)
        self.timings["jvm_s"] = time.monotonic() - t0
        log.info("executor actor %s: worker JVM %d registered on node %s", name, self.proc.pid, self.node_id)

    def _registered(self) -> bool:
        return _log_says(self.proc.log_path, "Successfully registered with master")

    def _executor_jvm(self) -> tuple[int | None, str | None]:
        for pid in jvm.children(self.proc.pid):
            args = jvm.cmdline(pid)
            if any("CoarseGrainedExecutorBackend" in a for a in args):
                exec_id = args[args.index("--executor-id") + 1] if "--executor-id" in args else None
                return pid, exec_id
        return None, None

    def info(self) -> dict:
        jvm_pid, executor_id = self._executor_jvm()
        return {"actor_name": self.name, "actor_pid": os.getpid(), "worker_jvm_pid": self.proc.pid,
                "placement_group_id": ray.get_runtime_context().get_placement_group_id(),
                "jvm_pid": jvm_pid, "node_id": self.node_id, "executor_id": executor_id,
                "worker_alive": self.proc.alive(), "timings": self.timings}

    def shutdown(self) -> None:
        self.proc.stop()
