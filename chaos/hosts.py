"""Real hosts on one machine: a Ray head and worker hosts, each in its own namespaces.

`ray.cluster_utils.Cluster` nodes share one IP address, one network stack and one `/tmp`: a
node-local file on "another node" is readable everywhere, and a node cannot be cut off. Here each
host is

- its own **network namespace** with its own address on a private /24 (a veth into a bridge that
  lives in a switch namespace of its own, so nothing touches the machine's network; detaching a
  host's port from the bridge partitions it, with no TCP reset, the way a cable pull does);
- its own **mount namespace**: its own disk on `/tmp` (a folder of the harness, bound there, so
  it outlives a crash as a real disk does, unless the crash wipes it) and a private tmpfs on
  `/dev/shm` (Ray's object store dies with the host);
- its own **PID namespace**: a small init (`_INIT`: it reaps every orphan, as a real host's init
  does) runs `ray start ... --block`, typed as a user would, or a Spark daemon; SIGKILLing that
  init ends every process of the host, the way a power cut does.

The driver runs on the head's host (`run_on_head`: `nsenter` into its namespaces). No Ray head
ever runs in the machine's own namespaces (it would write Ray's `ray_current_cluster` file, which
a plain `ray.init()` elsewhere then joins). Everything is torn down by `close()`, by `atexit`, and
by the next `Hosts()` for namespaces whose owning process is gone (a SIGKILLed test run).

Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and `ip`, `unshare`, `nsenter`; `available()` says why not.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

PREFIX = "ftbh"
SUBNET = "10.213.7"  # the hosts' /24: only the switch namespace routes it
RAY_PORT = 6379
DASHBOARD_PORT = 8265
SPARK_PORT = 7077       # a Spark standalone master's port, and its web UI's (its JSON status page)
SPARK_UI_PORT = 8080
# Ray's health checks, tightened so that a partitioned host is declared dead in seconds
# (defaults: a 3 s period, 10 s timeout, 5 failures); the same for every host.
HEALTH_ENV = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
              "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "4",
              # A task running on a host that stops answering is retried only once gRPC's keepalive
              # notices the dead connection (Ray's default: minutes). The same on every host, as a
              # user who runs across unreliable links would set it (docs: multi-node guide).
              "RAY_grpc_client_keepalive_time_ms": "2000", "RAY_grpc_client_keepalive_timeout_ms": "2000",
              "RAY_grpc_keepalive_time_ms": "2000", "RAY_grpc_keepalive_timeout_ms": "2000"}


def available() -> str | None:
    """None when namespaced hosts can be made here, else why not (for a skip message)."""
    if sys.platform != "linux":
        return "namespaced hosts need Linux"
    if os.geteuid() != 0:
        return "namespaced hosts need root (network and mount namespaces)"
    for tool in ("ip", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"namespaced hosts need `{tool}` (util-linux / iproute2)"
    probe = f"{PREFIX}-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _netns_pids(ns: str) -> list[int]:
    proc = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def _kill_netns(ns: str) -> None:
    for _ in range(50):
        pids = _netns_pids(ns)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    _ip("netns", "del", ns, check=False)


def sweep_stale() -> list[str]:
    """Delete namespaces left by a run whose process is gone (their name carries its pid)."""
    out = _ip("netns", "list", check=False).stdout
    gone = []
    for line in out.splitlines():
        ns = line.split()[0] if line.split() else ""
        parts = ns.split("-")
        if len(parts) >= 3 and parts[0] == PREFIX and parts[1].isdigit() and not _alive(int(parts[1])):
            _kill_netns(ns)
            gone.append(ns)
    return gone


@dataclass
class Host:
    """One host: its namespace, address, CPUs and the `ray start --block` process that is its init."""

    name: str
    ns: str
    ip: str
    cpus: int
    head: bool
    proc: subprocess.Popen | None = None   # `unshare` (in the machine's PID namespace)
    log_path: str = ""
    crashed: bool = False
    port: str = ""  # the head's GCS port (set when the head starts)

    @property
    def init_pid(self) -> int | None:
        """The host's PID 1 (as the machine sees it): `_INIT`, the parent of its Ray node or Spark daemon."""
        if self.proc is None:
            return None
        kids = _children(self.proc.pid)
        return kids[0] if kids else None



@dataclass
class Hosts:
    """A head host and `workers` worker hosts; see the module docstring."""

    workers: int = 2
    worker_cpus: int = 1
    head_cpus: int = 0
    object_store_mb: int = 150
    dashboard: bool = False                    # the head's dashboard (Ray Jobs API) on DASHBOARD_PORT
    # A Spark standalone cluster instead of Ray, started with Spark's own launcher: a master is
    # the head's init, a worker (`worker_cpus` cores, `spark_worker_memory`) each worker host's.
    # Ray then runs on that Spark cluster (`ray.util.spark.setup_ray_cluster` in the driver).
    spark: bool = False
    spark_worker_memory: str = "2g"
    env: dict = field(default_factory=dict)   # extra environment of every host's processes
    hosts: list[Host] = field(default_factory=list)
    shared: str = ""                           # a folder every host sees (outside /tmp): results, catalog

    def __post_init__(self) -> None:
        self.id = f"{PREFIX}-{os.getpid()}-{int(time.time() * 1000) % 10**6}"
        self.switch = f"{self.id}-sw"
        self._drivers: list[subprocess.Popen] = []
        self._closed = False

    # -- start -------------------------------------------------------------------------------
    def start(self, timeout_s: float = 120.0) -> Hosts:
        why = available()
        if why:
            raise RuntimeError(why)
        sweep_stale()
        atexit.register(self.close)
        self.shared = tempfile.mkdtemp(prefix=f"{self.id}-", dir="/var/tmp")
        os.chmod(self.shared, 0o700)
        # Ray's token authentication, as on a real cluster: one token, in a file every host reads.
        with open(os.path.join(self.shared, "auth_token"), "w", opener=lambda p, f: os.open(p, f, 0o600)) as f:
            f.write(secrets.token_hex(32))
        try:
            _ip("netns", "add", self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            _ip("-n", self.switch, "link", "set", "lo", "up")
            specs = [("head", self.head_cpus, True)] + [(f"w{i}", self.worker_cpus, False)
                                                         for i in range(1, self.workers + 1)]
            for index, (name, cpus, head) in enumerate(specs):
                host = Host(name, f"{self.id}-{name}", f"{SUBNET}.{index + 1}", cpus, head)
                self._wire(host, index)
                self.hosts.append(host)
            self._launch(self.head)
            self.wait_nodes(1, timeout_s)
            for host in self.worker_hosts:
                self._launch(host)
            self.wait_nodes(1 + self.workers, timeout_s)
        except BaseException:
            self.close()
            raise
        return self

    def _wire(self, host: Host, index: int) -> None:
        _ip("netns", "add", host.ns)
        _ip("-n", host.ns, "link", "set", "lo", "up")
        port = f"p{index}"
        _ip("-n", host.ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", self.switch)
        _ip("-n", host.ns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        _ip("-n", host.ns, "link", "set", "eth0", "up")
        _ip("-n", self.switch, "link", "set", port, "master", "br0")
        _ip("-n", self.switch, "link", "set", port, "up")
        host.port = port

    @property
    def head(self) -> Host:
        return self.hosts[0]

    @property
    def worker_hosts(self) -> list[Host]:
        return self.hosts[1:]

    @property
    def address(self) -> str:
        return f"{self.head.ip}:{RAY_PORT}"

    @property
    def spark_master(self) -> str:
        """The Spark standalone master's URL (with `spark=True`), as a SparkSession's master."""
        return f"spark://{self.head.ip}:{SPARK_PORT}"

    @property
    def jobs_address(self) -> str:
        """The head's Ray Jobs API (with `dashboard=True`), as `ray job submit --address` takes it."""
        return f"http://{self.head.ip}:{DASHBOARD_PORT}"

    def processes(self, host: Host) -> dict[int, str]:
        """{pid: command line} of every process running on the host."""
        out = {}
        for pid in _netns_pids(host.ns):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    out[pid] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
        return out

    def host_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") or k in ("RAY_DEDUP_LOGS",)}
        env.update({"RAY_USAGE_STATS_ENABLED": "0", "TMPDIR": "/tmp", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN_PATH": os.path.join(self.shared, "auth_token"), **HEALTH_ENV, **self.env})
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.pop("SPARK_LOCAL_IP", None)
        return env

    def _launch(self, host: Host) -> None:
        args = self._spark_daemon(host) if self.spark else self._ray_node(host)
        os.makedirs(self.disk(host), mode=0o1777, exist_ok=True)
        script = (f"mount --bind {_quote(self.disk(host))} /tmp && "
                  f"mount -t tmpfs -o size={self.object_store_mb * 3}m,mode=1777 tmpfs /dev/shm && "
                  f"exec {_quote(sys.executable)} -c {_quote(_INIT)} {' '.join(_quote(a) for a in args)}")
        host.log_path = os.path.join(self.shared, f"{host.name}.log")
        env = self.host_env()
        if self.spark:
            # Spark's daemons: small heaps; every executor a worker starts inherits this environment.
            env.update({"SPARK_HOME": spark_home(), "SPARK_DAEMON_MEMORY": "256m", "SPARK_NO_DAEMONIZE": "1"})
        with open(host.log_path, "ab") as log:
            host.proc = subprocess.Popen(
                ["ip", "netns", "exec", host.ns, "unshare", "--mount", "--propagation", "private", "--pid",
                 "--mount-proc", "--kill-child", "--", "/bin/sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        host.crashed = False

    def _spark_daemon(self, host: Host) -> list[str]:
        """`spark-class` for the head's master or a worker host's worker, as Spark's scripts run it."""
        launcher = os.path.join(spark_home(), "bin", "spark-class")
        if host.head:
            return [launcher, "org.apache.spark.deploy.master.Master", "--host", host.ip,
                    "--port", str(SPARK_PORT), "--webui-port", str(SPARK_UI_PORT)]
        return [launcher, "org.apache.spark.deploy.worker.Worker", self.spark_master, "--host", host.ip,
                "--cores", str(host.cpus), "--memory", self.spark_worker_memory,
                "--work-dir", "/tmp/spark-worker", "--webui-port", str(SPARK_UI_PORT + 1)]

    def _ray_node(self, host: Host) -> list[str]:
        ray = os.path.join(os.path.dirname(sys.executable), "ray")
        args = [ray, "start", "--block", f"--node-ip-address={host.ip}", f"--num-cpus={host.cpus}",
                f"--object-store-memory={self.object_store_mb * 2**20}", "--disable-usage-stats",
                f"--resources={json.dumps({f'host:{host.name}': 1})}"]
        if host.head:
            args += ["--head", f"--port={RAY_PORT}"]
            args += ([f"--dashboard-host={host.ip}", f"--dashboard-port={DASHBOARD_PORT}"] if self.dashboard
                     else ["--include-dashboard=false"])
        else:
            args += [f"--address={self.address}"]
        return args

    def wait_nodes(self, count: int, timeout_s: float = 120.0) -> None:
        """Until Ray's head lists `count` live nodes (asked from the head's host); with `spark`,
        until the master and `count - 1` live Spark workers are up."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            for host in self.hosts:
                if host.proc is not None and host.proc.poll() is not None and not host.crashed:
                    raise RuntimeError(f"host {host.name}'s init exited {host.proc.returncode}: "
                                       f"{_tail(host.log_path)}")
            if self.head.init_pid is not None:
                probe = self.run_on_head([sys.executable, "-c", self._count_script()], timeout_s=30, check=False)
                counts = [line for line in probe.stdout.splitlines() if line.strip().isdigit()]
                last = counts[-1].strip() if counts else (probe.stdout.strip() or probe.stderr.strip()[-300:])
                if probe.returncode == 0 and last.isdigit() and int(last) >= count:
                    return
            time.sleep(0.5)
        what = "Spark daemons" if self.spark else "Ray nodes"
        raise TimeoutError(f"{count} {what} were not up within {timeout_s:.0f}s (last: {last}); host logs "
                           f"under {self.shared}")

    def disk(self, host: Host) -> str:
        """The host's /tmp, seen from outside (also while the host is down)."""
        return os.path.join(self.shared, f"disk-{host.name}")

    # -- run ---------------------------------------------------------------------------------
    def _enter(self, host: Host) -> list[str]:
        pid = host.init_pid
        if pid is None:
            raise RuntimeError(f"host {host.name} is not running")
        return ["nsenter", "-t", str(pid), "-n", "-m", "-p", "--"]

    def run_on_head(self, args: list[str], timeout_s: float = 300.0, check: bool = True,
                    env: dict | None = None) -> subprocess.CompletedProcess:
        """Run a command on the head's host (its network, /tmp and PID namespace) to the end."""
        proc = self.popen_on_head(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._kill_group(proc)
            out, err = proc.communicate()
            raise TimeoutError(f"{args[:3]} on the head host did not end within {timeout_s:.0f}s: "
                               f"{err.decode(errors='replace')[-2000:]}") from None
        result = subprocess.CompletedProcess(args, proc.returncode, out.decode(errors="replace"),
                                             err.decode(errors="replace"))
        if check and result.returncode != 0:
            raise RuntimeError(f"{args[:3]} on the head host exited {result.returncode}: {result.stderr[-3000:]}")
        return result

    def popen_on_head(self, args: list[str], env: dict | None = None, **kw) -> subprocess.Popen:
        """Start a command on the head's host, in the background (the driver of a test)."""
        full = {**self.host_env(), "RAY_ADDRESS": self.address, **(env or {})}
        proc = subprocess.Popen([*self._enter(self.head), *args], env=full, cwd=os.getcwd(),
                                stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        self._drivers.append(proc)
        return proc

    @staticmethod
    def _kill_group(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # -- faults ------------------------------------------------------------------------------
    def crash(self, host: Host, wipe: bool = True) -> int | None:
        """Power cut: SIGKILL the host's init; the kernel ends every process of its PID namespace,
        and its /dev/shm goes with its mount namespace; `wipe`: its disk (/tmp) is lost too.
        Returns the init's pid (None: the host was down already, e.g. its Ray node gave up)."""
        pid = host.init_pid
        host.crashed = True
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        if host.proc is not None:
            host.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _netns_pids(host.ns) and time.monotonic() < deadline:
            time.sleep(0.1)
        if wipe:
            shutil.rmtree(self.disk(host), ignore_errors=True)
        return pid

    def restart(self, host: Host, timeout_s: float = 120.0) -> None:
        """The host comes back (a new boot: a fresh /tmp) and its Ray node joins the head again."""
        live = self.live_count()
        self._launch(host)
        self.wait_nodes(live + 1, timeout_s)

    def live_count(self) -> int:
        probe = self.run_on_head([sys.executable, "-c", self._count_script()], timeout_s=30)
        # Ray may print its own lines (e.g. "(raylet) Raylet is terminated" for a host just
        # crashed) to a driver's stdout: the count is the last line that is a number.
        counts = [line for line in probe.stdout.splitlines() if line.strip().isdigit()]
        if not counts:
            raise RuntimeError(f"the node count probe printed no count: {probe.stdout[-500:]}")
        return int(counts[-1])

    def _count_script(self) -> str:
        if self.spark:
            return _COUNT_SPARK.format(url=f"http://{self.head.ip}:{SPARK_UI_PORT}/json/")
        return _COUNT_NODES

    def partition(self, host: Host) -> None:
        """Cut the host off: its switch port goes down (packets vanish, no reset is sent)."""
        _ip("-n", self.switch, "link", "set", host.port, "down")

    def heal(self, host: Host) -> None:
        _ip("-n", self.switch, "link", "set", host.port, "up")

    def _cable(self, host: Host) -> list[tuple[str, str]]:
        """The two ends of the host's cable: (namespace, device) for what it sends and receives."""
        return [(host.ns, "eth0"), (self.switch, host.port)]

    def slow(self, host: Host, rate_kbit: int) -> None:
        """A slow link: both directions of the host's cable limited to `rate_kbit` by tc's token
        bucket filter; what waits more than 100 ms in its queue is dropped, so a burst is lossy
        too. (tc's netem, for delay and random loss, is not in every kernel: it is not here.)"""
        for ns, dev in self._cable(host):
            _ip("netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{rate_kbit}kbit",
                "burst", "32kbit", "latency", "100ms")

    def throttled(self, host: Host) -> dict[str, int]:
        """What the slow link did so far, both ends summed: {"sent", "dropped", "overlimits"}
        (overlimits: packets that had to wait for the bucket, i.e. the limit was reached)."""
        out = {"sent": 0, "dropped": 0, "overlimits": 0}
        for ns, dev in self._cable(host):
            stats = json.loads(_ip("netns", "exec", ns, "tc", "-s", "-j", "qdisc", "show", "dev", dev).stdout or "[]")
            for q in stats:
                if q.get("kind") == "tbf":
                    out["sent"] += int(q.get("bytes", 0))
                    out["dropped"] += int(q.get("drops", 0))
                    out["overlimits"] += int(q.get("overlimits", 0))
        return out

    def fast(self, host: Host) -> None:
        """The slow link back to full speed."""
        for ns, dev in self._cable(host):
            _ip("netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root", check=False)

    # -- inspect -----------------------------------------------------------------------------
    def files_under(self, host: Host, inside: str) -> dict[str, int]:
        """{path inside the host: size} of every file under `inside` (a path under /tmp) on that host."""
        if not inside.startswith("/tmp"):
            raise ValueError("only a host's /tmp is its own disk")
        root = self.disk(host)
        inside = inside[len("/tmp"):]
        out = {}
        for base, _, names in os.walk(root + inside):
            for name in names:
                full = os.path.join(base, name)
                try:
                    out["/tmp" + full[len(root):]] = os.path.getsize(full)
                except OSError:
                    continue
        return out

    def traffic(self) -> dict[str, int]:
        """{host name: bytes its interface has sent so far}. Every byte a host sends goes to
        another host, so the sum over hosts of a difference is what moved between hosts then
        (data and Ray's own control traffic). The counters outlive a crash: the interface
        belongs to the host's network namespace, which a crash leaves in place."""
        out = {}
        for host in self.hosts:
            proc = _ip("-n", host.ns, "-s", "-j", "link", "show", "eth0", check=False)
            try:
                out[host.name] = int(json.loads(proc.stdout)[0]["stats64"]["tx"]["bytes"])
            except (ValueError, LookupError, TypeError):
                out[host.name] = 0
        return out

    def session_leftovers(self) -> dict[str, list[str]]:
        """Per host: JVMs, Spark actors and ftbridge session folders (its logs are kept on purpose)."""
        out = {}
        for host in self.hosts:
            found = [f"process {pid}: {cmd[:160]}" for pid, cmd in self.processes(host).items()
                     if "java" in cmd.split(" ")[0] or "ray::SparkExecutor" in cmd or "ray::SparkMaster" in cmd]
            root = os.path.join(self.disk(host), "ftbridge-0")
            if os.path.isdir(root):
                found += [f"folder {n}" for n in os.listdir(root) if n.startswith("driver-")]
                for kind in ("master", "worker"):
                    where = os.path.join(root, "spark", kind)
                    found += [f"folder spark/{kind}/{n}" for n in (os.listdir(where) if os.path.isdir(where) else [])]
            if found:
                out[host.name] = found
        return out

    # -- stop --------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for proc in self._drivers:
            self._kill_group(proc)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for host in reversed(self.hosts):
            if host.proc is not None and host.proc.poll() is None:
                pid = host.init_pid
                if pid is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    host.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._kill_group(host.proc)
            _kill_netns(host.ns)
        _kill_netns(self.switch)
        if self.shared:
            shutil.rmtree(self.shared, ignore_errors=True)


# A host's PID 1: runs its command and reaps every process that ends orphaned, as a real host's
# init does. With the command itself as PID 1 (a Spark daemon's JVM, `ray start`), a process whose
# parent died stays a zombie, and Ray's workers, which watch their raylet's pid, live on for good.
_INIT = ("import os, signal, subprocess, sys\n"
         "child = subprocess.Popen(sys.argv[1:])\n"
         "for sig in (signal.SIGTERM, signal.SIGINT):\n"
         "    signal.signal(sig, lambda n, _: child.send_signal(n))\n"
         "while True:\n"
         "    pid, status = os.wait()\n"
         "    if pid == child.pid:\n"
         "        sys.exit(os.waitstatus_to_exitcode(status))\n")


_COUNT_NODES = ("import ray, logging; ray.init(address='auto', logging_level=logging.ERROR, log_to_driver=False); "
                "print(sum(1 for n in ray.nodes() if n['Alive']))")


# The master and its live workers, from the master's JSON status page.
_COUNT_SPARK = ("import json, urllib.request; s = json.load(urllib.request.urlopen({url!r}, timeout=5)); "
                "print(1 + sum(1 for w in s['workers'] if w['state'] == 'ALIVE'))")


def spark_home() -> str:
    """The installed PySpark's folder: a Spark distribution (bin/spark-class, jars/)."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("PySpark is not installed")
    return list(spec.submodule_search_locations)[0]


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"
