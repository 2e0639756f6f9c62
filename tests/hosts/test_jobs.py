"""Drivers submitted as Ray Jobs on real hosts (chaos/hosts.py, the head's dashboard on), the way
docs/guide/multi-node.md tells remote users to run them: `ray job submit --address http://HEAD:8265 --
ftbridge submit --address auto ... job.py`.

- a job that converts, checks every row and releases reaches SUCCEEDED with its output;
- a job stopped with `ray job stop` while Spark runs leaves no JVM, no executor actor and no
  session folder on any host (RayDP's Ray Jobs could hang on a JVM that outlived the driver);
  the folders of executors whose hosts crashed earlier are swept too, although those hosts came
  back with their old disks and reuse the dead executors' pids.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from ftbridge.chaos import hosts as hostlib

pytestmark = pytest.mark.hosts

JOB = os.path.join(os.path.dirname(__file__), "job.py")
GONE_S = 90.0  # ray job stop's SIGTERM, then SIGKILL after 3 s, then ftbridge's reapers (1 s polls)


def ray_cli() -> str:
    return os.path.join(os.path.dirname(sys.executable), "ray")


def submit(env: hostlib.Hosts, mode: str, *extra: str) -> list[str]:
    """`ray job submit ... -- ftbridge submit ... job.py MODE`: one executor (each worker host has
    one CPU, so the two jobs run side by side, one on each)."""
    runtime_env = {"env_vars": {"FTBRIDGE_HOSTS_SHARED": env.shared,
                                "FTBRIDGE_CATALOG": os.path.join(env.shared, "jobs.duckdb")}}
    return [ray_cli(), "job", "submit", "--address", env.jobs_address, *extra,
            "--runtime-env-json", json.dumps(runtime_env), "--",
            os.path.join(os.path.dirname(sys.executable), "ftbridge"), "submit", "--address", "auto",
            "--num-executors", "1", "--executor-memory", "512m", JOB, mode]


def test_drivers_as_ray_jobs_succeed_and_a_stopped_job_leaves_nothing(hosts):
    env = hosts
    if env.jobs_problem:
        pytest.fail(env.jobs_problem)
    env.wait_nodes(1 + len(env.worker_hosts))
    # Folders of executors on hosts that crashed before (test_hosts.py) may still be there: the
    # jobs' executors sweep them when they start on those hosts, so the end check covers them too.
    print(f"hosts: before the jobs: {env.session_leftovers()}")

    t0 = time.monotonic()
    started = env.run_on_head(submit(env, "hold", "--no-wait", "--submission-id", f"hold-{env.id}"), timeout_s=120)
    assert f"hold-{env.id}" in started.stdout + started.stderr
    done = env.run_on_head(submit(env, "convert"), timeout_s=300, check=False)
    print(f"hosts: the converting job ran {time.monotonic() - t0:.1f}s")
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in out, out[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    result = json.loads(line[len("RESULT "):])
    assert result["ok"] and result["checksum_ok"] and result["freed"] > 0, result

    ready = os.path.join(env.shared, "job-ready")
    deadline = time.monotonic() + 180
    while not os.path.exists(ready):
        status = env.run_on_head([ray_cli(), "job", "status", "--address", env.jobs_address, f"hold-{env.id}"],
                                 check=False, timeout_s=60)
        assert "FAILED" not in status.stdout and time.monotonic() < deadline, \
            f"the held job did not start Spark: {status.stdout[-2000:]}"
        time.sleep(1)
    print(f"hosts: the held job's Spark was up {time.monotonic() - t0:.1f}s after the first submit")
    with open(ready) as f:
        held = json.load(f)
    assert len(held["executors"]) == 1 and all(e["jvm_pid"] for e in held["executors"]), held
    assert env.session_leftovers(), "the running job shows no JVM or folder: the check would see nothing"

    env.run_on_head([ray_cli(), "job", "stop", "--address", env.jobs_address, f"hold-{env.id}"], timeout_s=120)
    status = env.run_on_head([ray_cli(), "job", "status", "--address", env.jobs_address, f"hold-{env.id}"],
                             timeout_s=60)
    assert "was stopped" in status.stdout, status.stdout[-2000:]
    stopped_at = time.monotonic()
    left = env.session_leftovers()
    while left and time.monotonic() - stopped_at < GONE_S:
        time.sleep(1)
        left = env.session_leftovers()
    assert not left, f"{GONE_S:.0f}s after `ray job stop`: {left}"
    print(f"hosts: the stopped job's JVMs, actors and folders were gone {time.monotonic() - stopped_at:.1f}s "
          "after `ray job stop`")
