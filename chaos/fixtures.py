"""pytest fixtures for the chaos harness: a chaos cluster, a fault log, and one fixture per killer.

Use from a conftest: ``pytest_plugins = ["ftbridge.chaos.fixtures"]``. Each killer fixture is bound to
the test's seed (``--chaos-seed``, default 1) and records into the test's `fault_log`.
"""

from __future__ import annotations

import functools
import os
import random
import subprocess

import pytest

from ftbridge.chaos import faults
from ftbridge.chaos.env import ChaosEnv
from ftbridge.common.config import env_name
from ftbridge.lineage.catalog import Catalog
from ftbridge.lineage.writer import get_writer


def pytest_addoption(parser):
    parser.addoption("--chaos-seed", type=int, default=None,
                     help="Seed of the chaos schedules (default: derived from the checked-out commit).")


def commit_seed(root: str | None = None) -> int:
    """A seed from the checked-out commit (1-9999): each commit runs other schedules, and a failure
    reproduces with `python -m ftbridge.chaos run --scenarios NAME --seed N`. 1 outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root or os.path.dirname(os.path.abspath(__file__)),
                              capture_output=True, text=True, timeout=10).stdout.strip()
        return int(head[:8], 16) % 9999 + 1
    except (OSError, ValueError, subprocess.SubprocessError):
        return 1


@pytest.fixture(scope="session")
def chaos_seed(request) -> int:
    given = request.config.getoption("--chaos-seed")
    return commit_seed() if given is None else given


def pytest_report_header(config):
    given = config.getoption("--chaos-seed")
    return f"chaos seed: {commit_seed() if given is None else given} (--chaos-seed N to choose)"


class SharedChaosEnv:
    """One chaos environment (three worker nodes and a Spark session on them) for every module that
    takes `chaos_env`: the chaos scenarios, the training tests and the node-loss test. The first such module starts it;
    it runs on until a module without it comes (see tests/conftest.py, which also puts those
    modules first) or the session ends. Its Spark session warms up as a user's does."""

    def __init__(self) -> None:
        self.env: ChaosEnv | None = None
        self._warm: str | None = None

    def get(self, cluster, workdir: str) -> ChaosEnv:
        if self.env is None:
            self._warm = os.environ.pop(env_name("warm_up"), None)
            self.env = ChaosEnv(cluster, workdir=workdir)
        return self.env

    def close(self) -> None:
        if self.env is None:
            return
        env, self.env = self.env, None
        try:
            env.close()
        finally:
            if self._warm is not None:
                os.environ[env_name("warm_up")] = self._warm
            self._warm = None


SHARED_CHAOS = SharedChaosEnv()


@pytest.fixture
def chaos_env(ray_cluster, tmp_path_factory):
    """Three worker nodes and a Spark session on them (needs a `ray_cluster` fixture), shared by
    the modules that use it (SharedChaosEnv)."""
    if SHARED_CHAOS.env is None:
        return SHARED_CHAOS.get(ray_cluster, str(tmp_path_factory.mktemp("chaos")))
    return SHARED_CHAOS.env


@pytest.fixture
def fault_log() -> faults.FaultLog:
    return faults.FaultLog()


@pytest.fixture
def chaos_rng(chaos_seed) -> random.Random:
    return random.Random(chaos_seed)


@pytest.fixture
def executor_killer(fault_log, chaos_rng):
    return functools.partial(faults.kill_executor, fault_log, chaos_rng)


@pytest.fixture
def node_killer(chaos_env, fault_log):
    def kill(node_id: str, wipe_spill: bool = True):
        fault = faults.remove_node(chaos_env.cluster, chaos_env.node(node_id), fault_log, wipe_spill=wipe_spill,
                                   spill_root=chaos_env.spill_root)
        chaos_env.remove(chaos_env.node(node_id)) if any(n.node_id == node_id for n in chaos_env.nodes) else None
        return fault

    return kill


@pytest.fixture
def spill_corruptor(fault_log, chaos_rng):
    return lambda path, mode="flip": faults.corrupt_spill(path, mode, chaos_rng, fault_log)


@pytest.fixture
def pauser(fault_log, chaos_rng):
    return lambda seconds=20.0: faults.pause_executor(fault_log, chaos_rng, seconds)


@pytest.fixture
def writer_killer(fault_log):
    return lambda catalog: faults.kill_catalog_writer(get_writer(Catalog(catalog)), fault_log)


@pytest.fixture
def random_executor_killer(fault_log, chaos_seed):
    """A seeded ResourceKiller factory: `with random_executor_killer(max_kills=2): ...`."""
    def make(max_kills: int = 1, min_gap_s: float = 0.5, max_gap_s: float = 3.0):
        return faults.ResourceKiller(lambda rng: faults.kill_executor(fault_log, rng), seed=chaos_seed,
                                     max_kills=max_kills, min_gap_s=min_gap_s, max_gap_s=max_gap_s)

    return make
