"""A Ray Train run on real hosts (chaos/hosts.py) whose worker's host crashes mid-epoch.

`fit_on_spark` (DataParallelTrainer, two workers, streaming, the resumable iterator,
tests/hosts/train_driver.py) on a head and two worker hosts of two cores each (one for a Spark
executor, one for a Train worker). Once Ray Train has registered a checkpoint inside epoch 1, the
host of a Train worker crashes (power cut, disk wiped: its Train worker, its executor and its
node-local spill files go); it boots again, and the epochs after the crash rebuild its files
through Spark. Checked, row by row (ids and content): every epoch
over the attempts that contributed to the final model saw each row exactly once, the restart
went on mid-epoch from the checkpoint, no rank of the final attempt saw a row twice; the catalog
has the failure and the resume.
"""

from __future__ import annotations

import os
import time

import pytest

from ftbridge.chaos.resumed import checkpoints_recorded
from ftbridge.chaos.training import read_progress
from ftbridge.lineage.catalog import Catalog
from tests.hosts.conftest import own_hosts
from tests.hosts.test_hosts import Driver, spill_files

pytestmark = pytest.mark.hosts

REGISTERED_S = 240.0


@pytest.fixture
def train_hosts():
    with own_hosts(workers=2, worker_cpus=2) as env:
        yield env


def test_a_train_workers_host_crashes_mid_epoch_and_the_run_resumes_each_row_once(train_hosts):
    env = train_hosts
    by_ip = {h.ip: h for h in env.hosts}
    driver = Driver(env, "train_driver.py")
    try:
        training = driver.step("training")
        catalog = os.path.join(env.shared, "c.duckdb")
        deadline = time.monotonic() + REGISTERED_S
        while True:
            assert driver.proc.poll() is None, f"the driver ended before a checkpoint in epoch 1: {driver.stderr_tail()}"
            assert time.monotonic() < deadline, f"no checkpoint inside epoch 1 registered within {REGISTERED_S:.0f}s"
            if os.path.exists(catalog):
                with Catalog(catalog).read() as con:
                    if checkpoints_recorded(con, "hosts-train", 1):
                        break
            time.sleep(0.2)
        workers = [p for p in read_progress(training["out"]) if p["kind"] == "attempt"]
        hosts = {training["nodes"].get(p["node"]) for p in workers}
        victims = sorted(ip for ip in hosts if ip in by_ip and not by_ip[ip].head)
        assert victims, f"no Train worker runs on a worker host: {workers}, nodes {training['nodes']}"
        # Preferably the host of a Train worker that also holds spill files (an executor's host):
        # the epochs after the crash must then rebuild what its disk held.
        victim = max((by_ip[ip] for ip in victims), key=lambda h: len(spill_files(env, h)))
        lost_files = spill_files(env, victim)
        batches = sum(1 for p in read_progress(training["out"]) if p["kind"] == "batch")
        crashed_at = time.monotonic()
        env.crash(victim, wipe=True)
        # Booted again only once Ray has declared the old node dead: restart() waits for one node
        # more than are alive, which a crashed node Ray still counts would never give.
        deadline = time.monotonic() + 90
        while env.live_count() == len(env.hosts):
            assert time.monotonic() < deadline, "Ray did not declare the crashed host dead within 90s"
            time.sleep(0.5)
        env.restart(victim)  # a new boot, a fresh disk: the restarted group needs its core
        trained = driver.step("trained")
        print(f"hosts: {victim.name} crashed after {batches} batches; training done "
              f"{time.monotonic() - crashed_at:.1f}s later: {trained['facts']}; lost {trained['time_lost_s']:.1f}s; "
              f"{len(lost_files)} spill files lost, {trained['rebuilt']} rebuilt")
        print("hosts: " + "\nhosts: ".join(trained["timeline"][-12:]))
        assert trained["ok"], trained["result"]
        assert trained["status"] == "finished" and trained["epochs_completed"] == 3, trained
        assert trained["worker_failures"] >= 1, trained["timeline"]
        if lost_files:
            assert trained["rebuilt"] >= 1, f"{len(lost_files)} spill files went with the host, none rebuilt: {trained}"
        assert trained["facts"]["mid_epoch_resumes"] >= 1 and trained["resumes"] >= 1, (trained["facts"], trained["timeline"])
        assert after_crash(read_progress(training["out"]), crashed_at), "no batch was read after the crash"
        assert driver.proc.wait(timeout=120) == 0, driver.stderr_tail()
    finally:
        if driver.proc.poll() is None:
            env._kill_group(driver.proc)
        driver.err.close()
    # The driver's JVM ends once its Python has (its stdin closes): wait for that, bounded.
    deadline = time.monotonic() + 60
    while (left := env.session_leftovers()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"the driver's session left {left}"


def after_crash(progress: list[dict], crashed_at: float) -> bool:
    """Whether a batch was read after the crash (progress times are time.time(); crashed_at monotonic)."""
    offset = time.time() - time.monotonic()
    return any(p["kind"] == "batch" and p["t"] > crashed_at + offset for p in progress)
