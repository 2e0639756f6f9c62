"""A running Spark-on-Ray session: the master actor, executor actors, the SparkSession.

All state of one session lives in a `SparkOnRay` object; `session.py` keeps the current one.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import ray
from pyspark.sql import SparkSession
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

from ftbridge.adapters.ray import ray_client_in_use, route_error_messages, session_log_dir
from ftbridge.adapters.spark import executor_ids, executor_target, launch_driver_jvm, pyspark_version, spark_home
from ftbridge.cluster import auth, cds, jars, jvm, net, scratch, versions
from ftbridge.cluster.actors import SparkExecutor, SparkMaster
from ftbridge.cluster.config import ClusterConfig
from ftbridge.cluster.nodewatch import DeadNodeWatcher
from ftbridge.cluster.placement import bundle_demand, check_resources
from ftbridge.common import foreign
from ftbridge.common.config import settings
from ftbridge.common.errors import (
    ClusterStartTimeoutError,
    ConfigurationError,
    InsufficientResourcesError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutorInfo:
    """One live executor, as the chaos harness and operators see it."""

    actor_name: str
    actor_pid: int
    jvm_pid: int | None
    node_id: str
    executor_id: str | None
    worker_jvm_pid: int
    placement_group_id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def ensure_ray() -> None:
    """Connect to Ray if the caller has not: RAY_ADDRESS if set, else a local embedded Ray.

    When ftbridge starts Ray itself, Ray's messages to the driver go to the log folder
    unless FTBRIDGE_RAY_LOG_TO_DRIVER is set.
    """
    address = os.environ.get("RAY_ADDRESS")
    if ray_client_in_use(None if ray.is_initialized() else address):
        how = address or "ray.init('ray://...')"
        raise ConfigurationError(
            f"Ray client connections ({how}) are not supported: Spark's "
            "driver JVM and ftbridge's catalog writer and rebuild service must run inside the cluster. Run the "
            "driver on a cluster node instead: `ray job submit --address http://HEAD:8265 -- python job.py`, "
            "or `ftbridge submit --address HEAD:6379 job.py` on the head node.")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=settings().ray_log_to_driver,
                 logging_level=logging.WARNING)
        route_ray_output()


def route_ray_output() -> None:
    """After ray.init: Ray's messages to this driver go to the log folder (unless
    FTBRIDGE_RAY_LOG_TO_DRIVER), and the log folder links Ray's session logs."""
    if not settings().ray_log_to_driver:
        route_error_messages(os.path.join(scratch.log_dir(), "ray-driver.log"))
    scratch.link_ray_logs(session_log_dir())


class SparkOnRay:
    """A running Spark-on-Ray session: master actor, executor actors, SparkSession."""

    def __init__(self, cfg: ClusterConfig) -> None:
        self.cfg = cfg
        versions.check_pandas(pyspark_version(), versions.installed_pandas())
        self.java = jvm.check_java_for_spark()
        ensure_ray()
        check_resources(cfg)
        self.pg: Any = None  # a Ray placement group
        self.owns_pg = False
        self.master: Any = None  # the master actor's handle
        self.executor_actors: list = []
        self._actors_lock = threading.RLock()
        self._placed: set = set()  # executor actors that answered once (their constructor ran)
        self._next_index = 0  # names and (static) bundle of the next executor actor
        self._allocator: ExecutorAllocator | None = None
        self.node_watch: DeadNodeWatcher | None = None
        self.spark: Any = None  # the SparkSession, once started
        self.stop_hooks: list[Callable[[bool], None]] = []
        self.driver_node_id = ray.get_runtime_context().get_node_id()
        self.namespace = ray.get_runtime_context().namespace
        self._ids = f"{cfg.app_name}-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
        self.startup_phases: dict[str, float] = {}  # seconds the driver waited, per step
        self.startup_report: dict[str, float] = {}
        self.cds: cds.ClassShare | None = None
        try:
            self._start()
        except BaseException:
            self._teardown()
            raise

    # -- start -------------------------------------------------------------------------------
    def _start(self) -> None:
        """Start everything that does not wait on something else at once.

        The master's address is chosen here, so the executor actors (whose worker JVMs wait
        for the master's port), the master actor and the driver JVM all start together; the
        SparkContext registers the application as soon as the master is elected leader, and the
        master launches an executor on each worker as it registers.
        """
        cfg = self.cfg
        t0 = time.monotonic()
        self.cds = cds.ClassShare(self.java, spark_home())
        self._phase("class-sharing archive", t0)
        if cfg.placement_group is not None:
            self.pg, self.owns_pg = cfg.placement_group, False
            self._wait_placement_group()
        elif cfg.placement_group_strategy:
            self._make_placement_group()
        self._phase("placement group", t0)
        host = ray.util.get_node_ip_address()
        port = cfg.master_port or net.free_port(host)
        self.master_url = f"spark://{host}:{port}"
        self.master = ray.remote(SparkMaster).options(
            name=f"ftbridge-master-{self._ids}", num_cpus=0, max_restarts=-1, max_task_retries=-1,
            # Pinned to the driver's node: a master restarted elsewhere would not know the application.
            scheduling_strategy=NodeAffinitySchedulingStrategy(self.driver_node_id, soft=False),
        ).remote(port, self.java, cfg.start_timeout_s, self._daemon_opts("master"), time.time(), cfg.auth_secret)
        for _ in range(cfg.num_executors):
            self.add_executor()
        t = time.monotonic()
        conf = self.spark_conf()
        log_path = os.path.join(scratch.log_dir(), "spark-driver.log")
        self._launch_driver_jvm(conf, log_path)
        self._phase("driver JVM", t)
        t = time.monotonic()
        self.master_info = self._get(self.master.info.remote(), "the Spark master actor")
        self.cds.save_class_path(self.master_info["jvm_pid"])  # the master runs on this node
        self._phase("master up (after driver JVM)", t)
        t = time.monotonic()
        self.spark = self._make_session(conf, log_path)
        self._phase("SparkContext", t)
        t = time.monotonic()
        self._wait_executor_actors()
        self._phase("executor actors (after SparkContext)", t)
        t = time.monotonic()
        self._wait_spark_executors()
        self._phase("Spark executors registered", t)
        self.startup_report = self._startup_report(time.monotonic() - t0)
        if cfg.dynamic:
            self._allocator = ExecutorAllocator(self)
        self.node_watch = DeadNodeWatcher(self)
        log.info("Spark on Ray ready: %d executors in %.1fs (master %s; %s)", cfg.num_executors,
                 self.startup_report["total_s"], self.master_url,
                 ", ".join(f"{k} {v:.2f}s" for k, v in self.startup_report.items() if k != "total_s"))

    def _startup_report(self, total_s: float) -> dict[str, float]:
        """Where the start-up seconds went: each part's own time (they overlap) and the driver's waits."""
        infos = []
        for actor in self.executor_actors:
            try:
                infos.append(ray.get(actor.info.remote(), timeout=10)["timings"])
            except Exception:  # the report is informational; a slow or restarted actor is left out
                continue
        master = self.master_info.get("timings", {})

        def longest(key):
            return max((i[key] for i in infos if i.get(key) is not None), default=0.0)

        phases = self.startup_phases
        return {
            "total_s": total_s,
            "Ray worker for the master actor": master.get("ray_worker_s") or 0.0,
            "master JVM up": master.get("jvm_s", 0.0),
            "Ray workers for executor actors (slowest)": longest("ray_worker_s"),
            "executor actors waiting for the master (slowest)": longest("master_wait_s"),
            "worker JVMs up and registered (slowest)": longest("jvm_s"),
            "driver JVM": phases.get("driver JVM", 0.0),
            "SparkContext": phases.get("SparkContext", 0.0),
            "executor JVMs launched and registered (after SparkContext)":
                phases.get("Spark executors registered", 0.0) + phases.get("executor actors (after SparkContext)", 0.0),
            "class-sharing archive": phases.get("class-sharing archive", 0.0),
        }

    def _phase(self, name: str, since: float) -> None:
        self.startup_phases[name] = time.monotonic() - since

    def _make_placement_group(self) -> None:
        bundle = self.cfg.actor_demand()
        self.pg = placement_group([bundle] * self.cfg.num_executors, strategy=self.cfg.placement_group_strategy)
        self.owns_pg = True
        self._wait_placement_group()

    def _wait_placement_group(self) -> None:
        ready, _ = ray.wait([self.pg.ready()], timeout=self.cfg.start_timeout_s)
        if not ready:
            raise InsufficientResourcesError(
                f"placement group ({self.cfg.placement_group_strategy or 'given'}, bundles {self.pg.bundle_specs}) "
                f"could not be placed within {self.cfg.start_timeout_s:.0f}s; the cluster has "
                f"{ray.available_resources()} free. Use a looser strategy or fewer/smaller executors.")

    def add_executor(self):
        """Start one more executor actor (its worker registers; the master gives it an executor)."""
        with self._actors_lock:
            index, self._next_index = self._next_index, self._next_index + 1
            actor = self._make_executor(index)
            self.executor_actors.append(actor)
            return actor

    def remove_executor(self, actor) -> None:
        """Stop an executor actor (whose worker runs no executor) and give its resources back to Ray."""
        with self._actors_lock:
            if actor not in self.executor_actors:
                return
            self.executor_actors.remove(actor)
            self._placed.discard(actor)
        try:
            ray.get(actor.shutdown.remote(), timeout=30)
        except Exception:  # dead or stuck: the kill below and its reaper finish the job
            pass
        try:
            ray.kill(actor, no_restart=True)
        except Exception:
            pass

    def _make_executor(self, index: int):
        cfg = self.cfg
        opts: dict[str, Any] = dict(name=f"ftbridge-exec-{self._ids}-{index}", num_cpus=cfg.executor_cpus,
                    num_gpus=cfg.executor_gpus or None, memory=cfg.actor_memory_bytes,
                    max_restarts=cfg.max_executor_restarts, max_task_retries=-1,
                    resources=dict(cfg.executor_resources) or None)
        if self.pg is not None:
            indexes = cfg.placement_group_bundle_indexes
            bundle = indexes[index] if cfg.placement_group is not None and indexes is not None else index
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=bundle)
            if "memory" not in bundle_demand(cfg.actor_demand(), self.pg.bundle_specs[bundle]):
                opts["memory"] = None
        return ray.remote(SparkExecutor).options(**opts).remote(
            opts["name"], self.master_url, cfg.executor_cores, cfg.memory_mb, self.java, cfg.start_timeout_s,
            self._daemon_opts("worker", str(index)), time.time(), cfg.auth_secret)

    def _daemon_opts(self, *cds_role: str) -> str:
        """Java options of a master or worker JVM: authentication (and encryption) flags, class sharing."""
        return f"{auth.daemon_opts(self.cfg.encrypt)} {self._cds_opts(*cds_role)}".rstrip()

    def _cds_opts(self, *role: str) -> str:
        """The class-sharing options of one JVM role ("" before the archive is set up)."""
        return self.cds.java_opts(*role) if self.cds is not None else ""

    def _wait_executor_actors(self) -> None:
        refs = [a.info.remote() for a in self.executor_actors]
        if not refs:  # dynamic allocation may start with none
            return
        ready, pending = ray.wait(refs, num_returns=len(refs), timeout=self.cfg.start_timeout_s)
        ray.get(ready)  # surfaces actor start errors
        self._placed.update(a for a, r in zip(self.executor_actors, refs) if r in ready)
        if pending:
            raise InsufficientResourcesError(
                f"{len(pending)} of {len(refs)} executor actors were not placed within "
                f"{self.cfg.start_timeout_s:.0f}s; Ray has {ray.available_resources()} free. Free resources, "
                "ask for fewer executors, or raise FTBRIDGE_START_TIMEOUT_S.")

    def spark_conf(self) -> dict[str, str]:
        cfg = self.cfg
        host = ray.util.get_node_ip_address()
        slots = cfg.executor_bounds[1] * cfg.executor_cores
        driver_dir = scratch.driver_dir()
        conf = {
            "spark.executor.cores": str(cfg.executor_cores),
            "spark.executor.memory": f"{cfg.memory_mb}m",
            "spark.cores.max": str(slots),
            "spark.driver.host": host,
            "spark.driver.bindAddress": host,
            "spark.ui.enabled": "false",
            "spark.pyspark.python": sys.executable,
            "spark.pyspark.driver.python": sys.executable,
            "spark.executorEnv.PYSPARK_PYTHON": sys.executable,
            # The driver JVM's temp files in this process's folder (see scratch.py); the
            # executors' come from their worker's environment.
            "spark.driver.extraJavaOptions": f"{jvm.JAVA_OPTS} {jvm.session_opts()} -Djava.io.tmpdir={driver_dir}/tmp "
                                             f"{self._cds_opts('driver')}".rstrip(),
            # Spark replaces {{EXECUTOR_ID}} in these per executor.
            "spark.executor.extraJavaOptions": f"{jvm.JAVA_OPTS} {jvm.session_opts()} "
                                               f"{self._cds_opts('executor', '{{EXECUTOR_ID}}')}"
                                               .rstrip(),
            "spark.local.dir": f"{driver_dir}/local",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.shuffle.partitions": str(max(2, 2 * slots)),
            "spark.task.maxFailures": "8",
            "spark.stage.maxConsecutiveAttempts": "8",
            "spark.network.timeout": "60s",
            "spark.executor.heartbeatInterval": "5s",
            # An executor may live for weeks: its stdout/stderr files roll instead of growing.
            "spark.executor.logs.rolling.strategy": "size",
            "spark.executor.logs.rolling.maxSize": str(16 << 20),
            "spark.executor.logs.rolling.maxRetainedFiles": "3",
            # Authentication on (the secret itself is set in _make_session, never on a command line).
            **auth.spark_conf(cfg.encrypt),
        }
        if cfg.dynamic:  # Spark decides the count; ExecutorAllocator makes Ray follow it
            conf.update({
                "spark.dynamicAllocation.enabled": "true",
                # No external shuffle service on Ray: executors with shuffle data stay until it is unused.
                "spark.dynamicAllocation.shuffleTracking.enabled": "true",
                "spark.dynamicAllocation.minExecutors": str(cfg.min_executors),
                "spark.dynamicAllocation.maxExecutors": str(cfg.max_executors),
                "spark.dynamicAllocation.initialExecutors": str(cfg.num_executors),
            })
        for key, value in cfg.configs.items():  # the user's settings win; their Java options come last
            conf[key] = f"{conf[key]} {value}" if key.endswith("extraJavaOptions") and key in conf else value
        jar = self._spill_writer_jar()
        if jar:
            conf["spark.jars"] = ",".join(j for j in (cfg.configs.get("spark.jars"), jar) if j)
        return conf

    def _spill_writer_jar(self) -> str | None:
        """The JVM spill writer's jar (see ftbridge/cluster/jars), unless FTBRIDGE_SPILL_WRITER=python."""
        return jars.build_jar(self.java, spark_home()) if jars.enabled() else None

    def _launch_driver_jvm(self, conf: dict[str, str], log_path: str) -> None:
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        os.environ["JAVA_HOME"] = jvm.java_home(self.java)
        scratch.watch_driver_jvm()  # before the JVM: this process may die while PySpark starts it
        try:
            jvm_pid = launch_driver_jvm({"spark.master": self.master_url, **conf}, log_path,
                                        os.path.join(scratch.driver_dir(), "tmp"))
        except BaseException as exc:
            # Interrupted (Ctrl-C, SIGTERM) or failed before the gateway answered: a JVM left
            # behind would run on with nobody to talk to.
            ended = scratch.kill_unstarted_driver_jvm()
            if ended:
                log.info("ended the driver JVM %s that did not start", ended)
            if not isinstance(exc, Exception):
                raise
            # Py4J: show the Java message, not a 200-line trace
            raise foreign.spark_start_failed(exc, self.cfg.app_name, log_path, jvm.file_tail(log_path, 15)) from exc
        if jvm_pid is not None:
            log.info("Spark driver JVM %d; its log: %s", jvm_pid, log_path)

    def _make_session(self, conf: dict[str, str], log_path: str):
        builder = SparkSession.builder.master(self.master_url).appName(self.cfg.app_name)
        for key, value in conf.items():
            builder = builder.config(key, value)
        # Through Py4J into the running driver JVM: no command line shows it.
        builder = builder.config(auth.SECRET_CONF, self.cfg.auth_secret)
        try:
            return builder.getOrCreate()
        except Exception as exc:  # Py4J: show the Java message, not a 200-line trace
            raise foreign.spark_start_failed(exc, self.cfg.app_name, log_path, jvm.file_tail(log_path, 15)) from exc

    def _wait_spark_executors(self) -> None:
        sc = self.spark.sparkContext
        want = self.cfg.num_executors
        deadline = time.monotonic() + self.cfg.start_timeout_s
        while time.monotonic() < deadline:
            if len(executor_ids(sc)) >= want:
                return
            time.sleep(0.2)
        raise ClusterStartTimeoutError(
            f"only {len(executor_ids(sc))} of {want} Spark executors registered with the driver within "
            f"{self.cfg.start_timeout_s:.0f}s. Check the worker logs under the executor actors' work dirs.")

    def _get(self, ref, what: str):
        try:
            return ray.get(ref, timeout=self.cfg.start_timeout_s)
        except ray.exceptions.GetTimeoutError as exc:
            raise ClusterStartTimeoutError(f"{what} did not start within {self.cfg.start_timeout_s:.0f}s") from exc

    # -- inspect -----------------------------------------------------------------------------
    def executors(self, timeout_s: float = 30.0) -> list[ExecutorInfo]:
        with self._actors_lock:
            refs = [a.info.remote() for a in self.executor_actors]
        if not refs:
            return []
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        out = []
        for ref in ready:
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError:
                continue
            info.pop("worker_alive", None)
            info.pop("timings", None)
            out.append(ExecutorInfo(**info))
        return sorted(out, key=lambda e: e.actor_name)

    # -- stop --------------------------------------------------------------------------------
    def stop(self, cleanup_data: bool = True) -> None:
        if self._allocator is not None:
            self._allocator.stop()
        for hook in list(self.stop_hooks):
            try:
                hook(cleanup_data)
            except Exception:  # a failing hook must not leave JVMs behind
                log.exception("stop hook %r failed", hook)
        self._teardown()

    def _teardown(self) -> None:
        if self.node_watch is not None:
            self.node_watch.stop()
        if self.spark is not None:
            try:
                self.spark.stop()
            except Exception:
                log.exception("SparkSession.stop failed")
            self.spark = None
        if self._allocator is not None:
            self._allocator.stop()
        with self._actors_lock:
            actors = [a for a in [*self.executor_actors, self.master] if a is not None]
        # An executor actor Ray never placed (its CPUs are held elsewhere) would not run a
        # shutdown call before the wait below runs out: it is killed at once, and so is one
        # whose constructor is still running or that does not answer within 2 s; the reaper
        # of any JVM it started ends it.
        # An actor Ray is restarting (its node died) is asked too: it may never be placed again.
        if self.executor_actors:
            probes = {a.info.remote(): a for a in self.executor_actors}
            answered, _ = ray.wait(list(probes), num_returns=len(probes), timeout=2)
            self._placed = {probes[r] for r in answered}
        graceful = [a for a in actors if a is self.master or a in self._placed]
        refs = [a.shutdown.remote() for a in graceful]
        ray.wait(refs, num_returns=len(refs), timeout=30)
        for actor in actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self.executor_actors, self.master = [], None
        self._placed.clear()
        swept = scratch.sweep()
        if swept:
            log.debug("removed stale Spark work dirs: %s", swept)
        if self.pg is not None and self.owns_pg:  # a group the caller gave stays theirs
            remove_placement_group(self.pg)
        self.pg = None
        if self.cds is not None:  # a session that recorded class lists builds the archive now, once
            self.cds.finish()


class ExecutorAllocator:
    """Dynamic allocation on Ray: executor actors follow Spark's own executor target.

    Spark's ExecutorAllocationManager (spark.dynamicAllocation.*, shuffle tracking on) decides
    how many executors the application wants: more while tasks are pending, fewer once an
    executor has been idle for `executorIdleTimeout` and holds no shuffle data or cached
    blocks. The standalone master can only launch executors on registered workers, and each
    worker lives in an executor actor holding Ray resources. So a thread on the driver polls
    Spark's target: below it, it starts executor actors (an actor Ray cannot place yet is
    pending demand the Ray autoscaler sees); above it, it stops actors whose worker has had no
    executor for `IDLE_GRACE_S` (Spark removed it), so their CPUs go back to Ray.
    """

    POLL_S = 1.0
    IDLE_GRACE_S = 5.0

    def __init__(self, session: SparkOnRay) -> None:
        self.session = session
        self.cfg = session.cfg
        self._idle_since: dict = {}
        self._warned = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ftbridge-allocator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self.POLL_S):
            if not ray.is_initialized():  # a Ray call after ray.shutdown() ends the process
                return
            try:
                self.step()
            except Exception as exc:  # one bad poll must not end allocation
                if not self._stop.is_set():
                    log.warning("executor allocation: %s", exc)

    def step(self) -> None:
        spark = self.session.spark
        if spark is None:
            return
        target = executor_target(spark.sparkContext)
        if target is None:
            if not self._warned:
                log.warning("dynamic allocation: cannot read Spark's executor target; executor actors stay as they are")
                self._warned = True
            return
        low, high = self.cfg.executor_bounds
        want = max(low, min(target, high))
        with self.session._actors_lock:
            actors = list(self.session.executor_actors)
        if want > len(actors):
            for _ in range(want - len(actors)):
                self.session.add_executor()
            log.info("dynamic allocation: Spark wants %d executors, started %d actors", want, want - len(actors))
            return
        if len(actors) <= want:
            self._idle_since.clear()
            return
        # Which workers run no executor? An actor still starting (or restarting) does not answer yet.
        refs = {a.info.remote(): a for a in actors}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=5)
        now = time.monotonic()
        idle = set()
        for ref in ready:
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError:
                continue
            actor = refs[ref]
            self.session._placed.add(actor)
            if info.get("jvm_pid") is None:
                idle.add(actor)
                self._idle_since.setdefault(actor, now)
        for actor in list(self._idle_since):
            if actor not in idle:
                del self._idle_since[actor]
        surplus = len(actors) - want
        for actor, since in sorted(self._idle_since.items(), key=lambda kv: kv[1]):
            if surplus <= 0:
                break
            if now - since >= self.IDLE_GRACE_S:
                del self._idle_since[actor]
                self.session.remove_executor(actor)
                surplus -= 1
                log.info("dynamic allocation: Spark wants %d executors, stopped an idle executor actor", want)
