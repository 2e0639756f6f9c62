"""Real hosts (chaos/hosts.py): a head and two worker hosts, each with its own address, disk and
processes. One driver on the head host (tests/hosts/driver.py) walks through the faults only real
hosts have; this test injects them while the driver's work runs and checks every host's disk.

- the files of a conversion are on both worker hosts, and `release` frees them on both;
- `to_spark` with node-local staging stages each block on an executor's host although the head
  holds the blocks, and Spark reads every row (checked) with no block staged again;
- both directions through a folder every host sees (a shared `staging_dir`, then `spill_dir`):
  every row, no recovery event, every file freed;
- a worker host crashes (power cut, disk wiped) while a materialized Dataset is being read: the
  read finishes exact, and reopening the conversion rebuilds exactly the crashed host's
  partitions through Spark (ids and content checked row by row, both times);
- a worker host crashes (disk wiped) while the spill job runs, once it has written a file and
  before the conversion returns: every row comes back, and the catalog names no file there;
- a worker host's link is slowed to 16 Mbit/s (tc's token bucket; lossy under bursts) during a
  conversion and its read: every row comes back, and the link's counters show the limit was hit;
- the head's host is cut off from both workers for less than Ray's detection bound, during the
  spill job and during a read: the work goes on, every row exact, no node or executor lost;
- a worker host is cut off while the spill job runs and healed after Ray declared it dead: the
  conversion finishes exact elsewhere; the host boots again with its old disk, nothing stale is
  read, and `release` frees its old files, also those no catalog row names;
- a worker host is cut off from the network during a read and never healed: Ray declares it dead,
  ftbridge removes its Spark executor at once, every row comes back;
- `stop_spark(cleanup_data=True)` leaves no spill file on a reachable host, and records the
  cut-off host's files as leftovers; that host comes back with its old disk, and `ftbridge gc`
  frees them there.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from ftbridge.chaos import hosts as hostlib

pytestmark = pytest.mark.hosts

SPILL = "/tmp/ftbridge-0/spill"
STEP_S = 300.0
HEAD_CUT_S = 1.5  # below Ray's detection bound on these hosts (chaos/hosts.py HEALTH_ENV)


class Driver:
    """The driver process on the head host, step by step."""

    def __init__(self, env: hostlib.Hosts, script: str = "driver.py", extra_env: dict | None = None) -> None:
        self.env = env
        driver_env = {"FTBRIDGE_HOSTS_SHARED": env.shared, "FTBRIDGE_CATALOG": os.path.join(env.shared, "c.duckdb"),
                      "PYTHONPATH": os.getcwd()}
        for name in ("FTBRIDGE_SPILL_DIR", "FTBRIDGE_LOG_DIR"):
            driver_env[name] = ""  # each host's own default, under its own /tmp
        driver_env.update(extra_env or {})
        self.stderr_path = os.path.join(env.shared, "driver.err")
        self.err = open(self.stderr_path, "wb")
        self.proc = env.popen_on_head([sys.executable, os.path.join(os.path.dirname(__file__), script)],
                                      env=driver_env, stdout=subprocess.PIPE, stderr=self.err)
        self.lines: queue.Queue = queue.Queue()
        self.t0 = time.monotonic()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.decode(errors="replace"))
        self.lines.put(None)

    def step(self, name: str) -> dict:
        msg = self._step(name)
        print(f"hosts: step {name} at {time.monotonic() - self.t0:.1f}s", flush=True)
        return msg

    def _step(self, name: str) -> dict:
        deadline = time.monotonic() + STEP_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the driver ended (rc {self.proc.wait()}) before step {name!r}: "
                                     f"{self.stderr_tail()}")
            if line.startswith("{"):
                msg = json.loads(line)
                assert msg["step"] == name, f"driver at step {msg['step']!r}, test expected {name!r}"
                return msg
        raise AssertionError(f"no step {name!r} from the driver within {STEP_S:.0f}s: {self.stderr_tail()}")

    def go(self, name: str, **payload) -> None:
        tmp = os.path.join(self.env.shared, f".go-{name}")
        with open(tmp, "w") as f:
            json.dump(payload, f)
        os.rename(tmp, os.path.join(self.env.shared, f"go-{name}"))

    def stderr_tail(self) -> str:
        self.err.flush()
        with open(self.stderr_path, errors="replace") as f:
            text = f.read()
        # The driver's own traceback first (Spark's and Ray's chatter after it would push it out of a tail).
        tb = text.rfind("Traceback (most recent call last)")
        if 0 <= tb < len(text) - 2000:
            end = text.find("\n\n", tb)
            return text[tb:end if end > 0 else tb + 3000][:3000] + "\n[...]\n" + text[-1500:]
        return text[-4000:]


def spill_files(env: hostlib.Hosts, host: hostlib.Host, cid: str | None = None) -> dict[str, int]:
    return {p: s for p, s in env.files_under(host, SPILL).items() if cid is None or f"/{cid}/" in p}


def by_ip(env: hostlib.Hosts) -> dict[str, hostlib.Host]:
    return {h.ip: h for h in env.hosts}


def busiest(env: hostlib.Hosts, parts: list[dict]) -> hostlib.Host:
    """The worker host holding the most of these partitions' files."""
    counts = {}
    for p in parts:
        counts[p["host"]] = counts.get(p["host"], 0) + 1
    return by_ip(env)[max((ip for ip in counts if ip != env.head.ip), key=counts.get)]


def in_folder(parts: list[dict], folder: str) -> int:
    """The bytes of these partitions' files, each of which must be in `folder`."""
    assert parts and all(p["path"].startswith(folder + "/") for p in parts), parts
    assert all(os.path.exists(p["path"]) for p in parts), f"a file is not in {folder}: {parts}"
    return sum(os.path.getsize(p["path"]) for p in parts)


def moved(env: hostlib.Hosts, since: dict[str, int]) -> int:
    """Bytes sent between hosts since the `env.traffic()` snapshot `since`."""
    return sum(n - since.get(name, 0) for name, n in env.traffic().items())


def new_file(env: hostlib.Hosts, hosts: list[hostlib.Host], before: dict[str, set]) -> hostlib.Host:
    """Wait (bounded) until one of `hosts` holds a spill file it did not hold in `before`; that host."""
    deadline = time.monotonic() + 120
    while True:
        for h in hosts:
            if set(spill_files(env, h)) - before[h.name]:
                return h
        assert time.monotonic() < deadline, "the spill job wrote nothing on a worker host within 120s"
        time.sleep(0.05)


def cut_for(env: hostlib.Hosts, host: hostlib.Host, seconds: float, then=None) -> tuple[float, float]:
    """Cut `host` off, call `then()` (e.g. let the driver go on), heal it `seconds` after the cut;
    (cut, healed) on the driver's clock (time.time())."""
    cut_at = time.time()
    env.partition(host)
    try:
        if then is not None:
            then()
        time.sleep(max(0.0, seconds - (time.time() - cut_at)))
    finally:
        env.heal(host)
    return cut_at, time.time()


def head_cut(env: hostlib.Hosts, driver: Driver, figures: dict) -> None:
    """2d. The head's host (driver, catalog writer, Ray's head) cut off from every worker host for
    HEAD_CUT_S, below Ray's detection bound (health checks every 1 s, dead after 4 misses; gRPC
    keepalive 2 s + 2 s), once while the spill job writes and once while the driver reads (the
    rest of an interrupted read, then the conversion reopened, whose read tasks run on the worker
    hosts): the work stalls and goes on, every row exact, no node declared dead, no executor
    replaced.
    (A cut past that bound is the loss of every worker node: Ray's head is its single point of
    failure, and that case is the loss of the cluster, not of a host.)"""
    before = {h.name: set(spill_files(env, h)) for h in env.worker_hosts}
    driver.step("spilling-head-cut")
    new_file(env, env.worker_hosts, before)
    spill_cut = cut_for(env, env.head, HEAD_CUT_S)
    driver.step("reading-head-cut")
    read_cut = cut_for(env, env.head, HEAD_CUT_S, then=lambda: driver.go("reading-head-cut"))
    done = driver.step("head-cut")
    assert spill_cut[1] < done["returned_at"], "the conversion had returned before the head's cut was healed"
    assert read_cut[1] < done["read_done_at"], "the reads had ended before the head's cut was healed"
    assert done["ok"] and done["checksum_ok"], done["result"]
    assert done["executors_after"] == done["executors_before"], \
        f"an executor was replaced: {done['executors_before']} -> {done['executors_after']}"
    recovery = [e for e in done["events"] if e["kind"] not in ("created", "read", "completed")]
    assert env.live_count() == len(env.hosts), "a host was declared dead after a cut below Ray's bound"
    print(f"hosts: head cut off {HEAD_CUT_S:.1f}s during the spill job (it returned "
          f"{done['returned_at'] - spill_cut[1]:.1f}s after the heal) and during the read; events {recovery}")
    figures["head_cut"] = {"cut_s": HEAD_CUT_S, "returned_after_heal_s": done["returned_at"] - spill_cut[1],
                           "read_done_after_heal_s": done["read_done_at"] - read_cut[1],
                           "recovery_events": len(recovery)}
    driver.go("head-cut")


def partition_healed(env: hostlib.Hosts, driver: Driver, figures: dict) -> None:
    """2e. A worker host cut off while the spill job runs, healed after Ray declared it dead: the
    conversion finishes exact on the other host, and the catalog names no file on the cut host.
    Ray does not take a node it declared dead back: the host boots again with its old disk (the
    files it wrote before the cut), the conversion reopened reads nothing stale, and `release`
    frees every file of it on that host, recorded or not."""
    before = {h.name: set(spill_files(env, h)) for h in env.worker_hosts}
    driver.step("spilling-partition")
    victim = new_file(env, env.worker_hosts, before)
    cut_at = time.time()
    env.partition(victim)
    deadline = time.monotonic() + 90
    while env.live_count() == len(env.hosts):
        assert time.monotonic() < deadline, "Ray did not declare the cut-off host dead within 90s"
        time.sleep(0.5)
    dead_s = time.time() - cut_at
    env.heal(victim)
    spilled = driver.step("spilled-partition")
    assert cut_at < spilled["returned_at"], "the conversion had returned before the host was cut off"
    assert spilled["ok"] and spilled["checksum_ok"], spilled["result"]
    misplaced = [p for p in spilled["parts"] if p["host"] == victim.ip or p["state"] != "healthy"]
    assert not misplaced, f"the catalog names files on the cut-off host: {misplaced}"
    assert victim.ip not in spilled["executors"].values(), spilled["executors"]
    env.crash(victim, wipe=False)  # its Ray node was told it is dead and ended; the host boots again
    kept = spill_files(env, victim, spilled["cid"])
    assert kept, "the cut-off host kept no file of the conversion (the cut landed before it wrote one)"
    env.restart(victim)
    driver.go("spilled-partition")
    released = driver.step("released-partition")
    assert released["ok"] and released["checksum_ok"], f"reopened after the host came back: {released['result']}"
    left = spill_files(env, victim, spilled["cid"])
    assert not left, f"release left the cut-off host's files: {left}"
    print(f"hosts: worker cut off during the spill job, declared dead after {dead_s:.1f}s and healed; the "
          f"conversion returned {spilled['returned_at'] - cut_at:.1f}s after the cut; {len(kept)} old files "
          f"on its disk freed by release ({released['freed']} bytes in all)")
    figures["partition_healed"] = {"declared_dead_after_s": dead_s, "returned_after_cut_s": spilled["returned_at"] - cut_at,
                                   "old_files": len(kept), "old_bytes": sum(kept.values())}
    driver.go("released-partition")


def test_hosts_crash_partition_and_free_their_files(hosts):
    env = hosts
    driver = Driver(env)
    figures: dict = {}  # for benchmarks/hosts.py (FTBRIDGE_HOSTS_FIGURES): timings are not asserted
    try:
        started = driver.step("started")
        traffic = env.traffic()
        assert sorted(started["executors"].values()) == sorted(h.ip for h in env.worker_hosts), \
            "one executor on each worker host"

        # 1. Both worker hosts hold files of the conversion; release frees them on both.
        conv = driver.step("converted")
        figures["from_spark_moved_bytes"] = moved(env, traffic)
        cid = conv["cid"]
        holders = {p["host"] for p in conv["parts"]}
        assert holders == {h.ip for h in env.worker_hosts}, f"spill files on {holders}"
        on_disk = {h.ip: spill_files(env, h, cid) for h in env.hosts}
        for p in conv["parts"]:  # each file is on its own host's disk, and only there
            assert [ip for ip, files in on_disk.items() if p["path"] in files] == [p["host"]]
        driver.go("converted")
        released = driver.step("released")
        assert all(not spill_files(env, h, cid) for h in env.hosts), "release left files on a host"
        (detail,) = [e["detail"] for e in released["events"] if e["kind"] == "released"]
        for h in env.worker_hosts:  # the bytes each host freed, as the files were on its disk
            assert f"{h.ip}: {sum(on_disk[h.ip].values())} bytes" in detail, detail
        assert released["freed"] == sum(sum(f.values()) for f in on_disk.values()) > 0
        figures["spilled_bytes_per_host"] = {h.name: sum(on_disk[h.ip].values()) for h in env.hosts}
        traffic = env.traffic()
        driver.go("released")

        # 1b. to_spark with node-local staging: each block staged on an executor's host (not the
        # head, which holds the blocks), read by Spark wherever it places the task, no restaging.
        staged = driver.step("to-spark")
        figures["to_spark_moved_bytes"] = moved(env, traffic)
        cid = staged["cid"]
        assert staged["ok"] and staged["checksum_ok"], staged["result"]
        holders = {p["host"] for p in staged["parts"]}
        assert holders <= {h.ip for h in env.worker_hosts} and holders, f"staged on {holders}"
        on_disk = {h.ip: spill_files(env, h, cid) for h in env.hosts}
        for p in staged["parts"]:
            assert [ip for ip, files in on_disk.items() if p["path"] in files] == [p["host"]]
        recoveries = [e for e in staged["events"] if e["kind"] != "created"]
        assert not recoveries, f"a fault-free to_spark recorded {recoveries}"
        driver.go("to-spark")
        released = driver.step("to-spark-released")
        assert all(not spill_files(env, h, cid) for h in env.hosts), "release left staged files on a host"
        assert released["freed"] == sum(sum(f.values()) for f in on_disk.values()) > 0
        driver.go("to-spark-released")

        # 1c. The same through a folder every host sees: Ray -> Spark with a shared staging_dir,
        # then Spark -> Ray with a shared spill_dir. Every row, no recovery, every file freed.
        traffic = env.traffic()
        staged = driver.step("to-spark-shared")
        figures["to_spark_shared_moved_bytes"] = moved(env, traffic)
        assert staged["ok"] and staged["checksum_ok"], staged["result"]
        shared_dir = staged["dir"]
        on_shared = in_folder(staged["parts"], shared_dir)
        recoveries = [e for e in staged["events"] if e["kind"] != "created"]
        assert not recoveries, f"a fault-free to_spark through a shared folder recorded {recoveries}"
        traffic = env.traffic()
        driver.go("to-spark-shared")
        spilled = driver.step("from-spark-shared")
        figures["from_spark_shared_moved_bytes"] = moved(env, traffic)
        assert spilled["staged_freed"] == on_shared > 0, (spilled["staged_freed"], on_shared)
        assert spilled["ok"] and spilled["checksum_ok"], spilled["result"]
        on_shared = in_folder(spilled["parts"], shared_dir)
        recoveries = [e for e in spilled["events"] if e["kind"] not in ("created", "read")]
        assert not recoveries, f"a fault-free conversion through a shared folder recorded {recoveries}"
        driver.go("from-spark-shared")
        released = driver.step("shared-released")
        assert released["freed"] == on_shared > 0, (released["freed"], on_shared)
        left = [os.path.join(d, f) for d, _, files in os.walk(shared_dir) for f in files]
        assert not left, f"release left files in the shared folder: {left}"
        driver.go("shared-released")

        # 2. A worker host crashes, its disk wiped, during a materialized read; then the conversion is reopened.
        conv = driver.step("converted-crash")
        victim = busiest(env, conv["parts"])
        lost = {p["id"] for p in conv["parts"] if p["host"] == victim.ip}
        driver.go("converted-crash")
        driver.step("reading-crash")
        env.crash(victim, wipe=True)
        assert not os.path.exists(env.disk(victim))
        traffic = env.traffic()
        driver.go("reading-crash")
        after = driver.step("read-after-crash")
        figures["crash"] = {"read_s": after["seconds"], "reopen_and_rebuild_s": after["reopen_seconds"],
                            "partitions_rebuilt": len(lost), "of_partitions": len(conv["parts"]),
                            "moved_bytes": moved(env, traffic)}
        print(f"hosts: read after the crash {after['seconds']:.1f}s; reopened and rebuilt in "
              f"{after['reopen_seconds']:.1f}s")
        assert after["ok"] and after["checksum_ok"], after["result"]
        rebuilt = {e["partition"] for e in after["events"] if e["kind"] == "rebuilt_from_spark"}
        assert rebuilt == lost, f"rebuilt {rebuilt}, the crashed host held {lost}: {after['events']}"
        env.restart(victim)  # a new boot: a fresh disk, a new Ray node on the same address
        driver.go("read-after-crash")

        # 2b. A worker host crashes, its disk wiped, while the spill job runs: once it has written
        # a file of the conversion and before the conversion returns (both checked).
        before = set(spill_files(env, victim))
        driver.step("spilling-crash")
        deadline = time.monotonic() + 120
        while not (written := set(spill_files(env, victim)) - before):
            assert time.monotonic() < deadline, "the spill job wrote nothing on the host within 120s"
            time.sleep(0.05)
        crashed_at = time.time()  # the power cut is the first thing crash() does
        env.crash(victim, wipe=True)
        traffic = env.traffic()
        spilled = driver.step("spilled-crash")
        assert crashed_at < spilled["returned_at"], "the conversion had returned before the host crashed"
        assert spilled["ok"] and spilled["checksum_ok"], spilled["result"]
        print(f"hosts: the spill job's host crashed {spilled['returned_at'] - crashed_at:.1f}s before the "
              f"conversion returned, with {len(written)} of its files written")
        # Reading found what the crash took (files the host had written for finished tasks) and
        # rebuilt it; a task cut short ran again on the other host. Now nothing is on the crashed host.
        rebuilt = {e["partition"] for e in spilled["events"] if e["kind"] == "rebuilt_from_spark"}
        misplaced = [p for p in spilled["parts"] if p["host"] == victim.ip or p["state"] != "healthy"]
        assert not misplaced, f"after the read the catalog still names the crashed host's files: {misplaced}"
        figures["crash_during_spill"] = {"crash_before_return_s": spilled["returned_at"] - crashed_at,
                                         "files_lost": len(written), "partitions_rebuilt": len(rebuilt),
                                         "moved_bytes": moved(env, traffic)}
        env.restart(victim)
        driver.go("spilled-crash")

        # 2c. A worker host's link slowed to 16 Mbit/s in both directions (lossy under bursts)
        # during a conversion and its read: every row comes back; how much slower is a figure.
        full = driver.step("slow-link")
        assert full["ok"], full["result"]
        slowed_host = env.worker_hosts[0]
        env.slow(slowed_host, rate_kbit=16_000)
        try:
            driver.go("slow-link")
            slowed = driver.step("slowed")
            link = env.throttled(slowed_host)
        finally:
            env.fast(slowed_host)
        assert slowed["ok"] and slowed["checksum_ok"], slowed["result"]
        assert link["overlimits"] > 0, f"the work never reached the link's limit: {link}"
        print(f"hosts: slow link: {slowed['seconds']:.1f}s vs {full['full_seconds']:.1f}s at full speed; {link}")
        figures["slow_link"] = {"full_speed_s": full["full_seconds"], "slowed_s": slowed["seconds"],
                                "ratio": slowed["seconds"] / full["full_seconds"], "moved_bytes": link["sent"],
                                "dropped_packets": link["dropped"]}
        driver.go("slowed")

        head_cut(env, driver, figures)
        partition_healed(env, driver, figures)

        # 3. A worker host is cut off during a read and never healed.
        conv = driver.step("converted-partition")
        cut = busiest(env, conv["parts"])
        cut_executor = next(e for e, ip in conv["executors"].items() if ip == cut.ip)
        cut_files = spill_files(env, cut, conv["cid"])
        assert cut_files
        driver.go("converted-partition")
        driver.step("reading-partition")
        env.partition(cut)
        cut_wall = time.time()  # the driver's clock: its dead_at is time.time() too
        driver.go("reading-partition")
        cut_at = time.monotonic()
        after = driver.step("read-after-partition")
        finished_s = time.monotonic() - cut_at
        print(f"hosts: partitioned read finished {finished_s:.1f}s after the cut "
              f"(the read itself {after['seconds']:.1f}s; reopened and rebuilt in {after['reopen_seconds']:.1f}s)")
        assert after["ok"] and after["checksum_ok"], after["result"]
        assert {"executor": cut_executor, "host": cut.ip} in after["removed"], \
            f"ftbridge did not remove the cut-off host's executor: {after['removed']}"
        for e in after["events"]:
            print(f"hosts:   {e['at'] - after['cut_at']:+7.1f}s {e['kind']} {e['partition']} {e['duration_s']:.1f}s "
                  f"{e['source']} {str(e['detail'])[:100]}")
        print(f"hosts:   executor removed at {(after['dead_at'] or 0) - after['cut_at']:+.1f}s")
        figures["partition"] = {"executor_removed_after_cut_s": (after["dead_at"] or cut_wall) - cut_wall,
                                "reopened_read_finished_after_cut_s": finished_s,
                                "reopen_and_rebuild_s": after["reopen_seconds"]}
        held = {p["id"] for p in conv["parts"] if p["host"] == cut.ip}
        rebuilt = {e["partition"] for e in after["events"] if e["kind"] == "rebuilt_from_spark"}
        assert rebuilt == held, f"rebuilt {rebuilt}, the cut-off host held {held}: {after['events']}"
        figures["partition"].update(partitions_rebuilt=len(held), of_partitions=len(conv["parts"]))

        # 4. Stop with cleanup: reachable hosts hold nothing; the cut-off host's files wait.
        stopped = driver.step("stopped")
        for h in env.hosts:
            if h is not cut:
                assert not spill_files(env, h), f"{h.name} still holds {spill_files(env, h)}"
        waiting = {f["path"] for f in stopped["leftovers"] if f["host"] == cut.ip}
        assert all(f["host"] == cut.ip for f in stopped["leftovers"]), stopped["leftovers"]
        assert set(cut_files) <= waiting, "the cut-off host's files are not recorded as leftovers"
        assert driver.proc.wait(timeout=120) == 0, driver.stderr_tail()
        print("hosts: driver stderr:", driver.stderr_tail()[-3000:])
    finally:
        if driver.proc.poll() is None:
            env._kill_group(driver.proc)
        driver.err.close()

    # The cut-off host comes back with its old disk (its Ray node was declared dead: it boots
    # again), and gc, run on the head host against the cluster, frees its files there.
    env.heal(cut)
    env.crash(cut, wipe=False)
    kept = spill_files(env, cut)
    assert set(cut_files) <= set(kept), "the host's disk did not keep its files"
    assert set(kept) <= waiting, "a file on the cut-off host is not recorded as a leftover"
    env.restart(cut)
    print(f"hosts: cut-off host back at {time.monotonic() - driver.t0:.1f}s")
    gc = env.run_on_head([os.path.join(os.path.dirname(sys.executable), "ftbridge"), "gc", "--json", "--catalog",
                          os.path.join(env.shared, "c.duckdb"), "--ray-address", env.address], timeout_s=180)
    report = json.loads(gc.stdout)
    print(f"hosts: gc done at {time.monotonic() - driver.t0:.1f}s: {report['by_host']}")
    assert report["by_host"].get(cut.ip) == sum(kept.values()) and report["waiting"] == 0, report
    for h in env.hosts:
        assert not spill_files(env, h), f"{h.name} still holds {spill_files(env, h)} after gc"
    # No JVM, Spark actor or session folder of the driver on a host that stayed up (the cut-off
    # host's executor folder is on its old disk: the next executor there sweeps it, test_jobs.py).
    left = {name: what for name, what in env.session_leftovers().items() if name != cut.name}
    assert not left, f"the driver's session left {left}"
    if os.environ.get("FTBRIDGE_HOSTS_FIGURES"):
        with open(os.environ["FTBRIDGE_HOSTS_FIGURES"], "w") as f:
            json.dump(figures, f, indent=2)
