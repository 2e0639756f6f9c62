"""One host-level cluster (chaos/hosts.py) for every test of this folder, torn down after the last."""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest

from ftbridge.chaos import hosts as hostlib


def jobs_overlay() -> tuple[str, str | None]:
    """(folder with ray[default]'s packages, why it cannot be used or None); see overlay.py."""
    from tests.hosts import overlay

    path = os.environ.get("FTBRIDGE_RAY_DEFAULT_OVERLAY", "")
    if not path:
        return "", ("FTBRIDGE_RAY_DEFAULT_OVERLAY is not set: run the tests with ./dev test, or "
                    "`python tests/hosts/overlay.py DIR` and set it to DIR")
    return path, overlay.ready(path)


@pytest.fixture(scope="package")
def hosts():
    why = hostlib.available()
    if why:
        pytest.skip(why)
    path, problem = jobs_overlay()
    # With ray[default]'s packages on the hosts' path, the head serves Ray's Jobs API (test_jobs.py).
    env = hostlib.Hosts(workers=2, worker_cpus=1, dashboard=problem is None,
                        env={} if problem else {"PYTHONPATH": path}).start()
    env.jobs_problem = problem
    _SHARED.append(env)
    try:
        yield env
    finally:
        close_shared_hosts()


_SHARED: list = []


def close_shared_hosts() -> None:
    """Tear down the shared hosts now (the Ray-on-Spark test, last, starts hosts of its own and
    needs the machine's cores), checking they left no folder or namespace."""
    while _SHARED:
        env = _SHARED.pop()
        env.close()
        assert not os.path.exists(env.shared), "the host environment left its folder"
        assert not [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
                    .stdout.split() if n.startswith(env.id)], "the host environment left namespaces"


@contextlib.contextmanager
def own_hosts(**options):
    """Hosts of a test's own (`hostlib.Hosts(**options)`), started once the shared ones are torn
    down (their Ray nodes would take cores); skipped where namespaces cannot be made."""
    why = hostlib.available()
    if why:
        pytest.skip(why)
    close_shared_hosts()
    env = hostlib.Hosts(**options).start()
    try:
        yield env
    finally:
        env.close()
        assert not os.path.exists(env.shared), "the host environment left its folder"
