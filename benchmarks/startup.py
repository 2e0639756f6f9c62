"""Where `init_spark`'s seconds go: one fresh process per round, parts and waits per round, medians.

    ./dev bench startup [rounds]       (default 5)

Each round is a new Python process with its own embedded Ray (4 logical CPUs), so every round
pays for a new driver JVM as a user's program does. The parts run at the same time (see
`SparkOnRay._start`): the master actor and the executor actors start together with the driver
JVM, the SparkContext registers the application as soon as the master is elected leader, and the
master launches an executor on each worker as it registers. So the parts' own times add up to
more than the total. Each process then stops Spark and starts it again, as a notebook does:
that second `init_spark` reuses the driver JVM (its SparkContext registers at once, since the
master counts as up only once it is elected leader). Results: benchmarks/results/startup.json.
Side by side with RayDP: `./dev bench raydp`.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import median, ray_init, run_elsewhere, write_results


def child() -> None:
    import logging

    import ray

    import ftbridge
    from ftbridge.cluster import session

    logging.basicConfig(level=logging.ERROR)
    t0 = time.perf_counter()
    ray_init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    spark = ftbridge.init_spark("startup", num_executors=2, executor_cores=1, executor_memory="1GB")
    init_s = time.perf_counter() - t0
    report = dict(session.current().startup_report)
    spark.sparkContext.setLogLevel("ERROR")
    t0 = time.perf_counter()
    assert spark.range(0, 10**6, numPartitions=2).count() == 10**6
    first_s = time.perf_counter() - t0
    ftbridge.stop_spark()
    t0 = time.perf_counter()
    spark = ftbridge.init_spark("startup-again", num_executors=2, executor_cores=1, executor_memory="1GB")
    again_s = time.perf_counter() - t0
    again = session.current().startup_report
    ftbridge.stop_spark()
    ray.shutdown()
    print("RESULT " + json.dumps({"ray.init": ray_s, "init_spark": init_s, "first job": first_s, **report,
                                  "init_spark again (same process)": again_s,
                                  "SparkContext again (same process)": again.get("SparkContext", 0.0)}))


def main(rounds: int) -> None:
    results = []
    for i in range(rounds):
        proc = run_elsewhere([sys.executable, os.path.abspath(__file__), "--child"], capture_output=True, text=True, timeout=900)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"round {i} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        results.append(json.loads(line[len("RESULT "):]))
        r = results[-1]
        print(f"round {i}: init_spark {r['init_spark']:.2f} s, first job {r['first job']:.2f} s, "
              f"init_spark again {r['init_spark again (same process)']:.2f} s", flush=True)
    print(f"\nmedians over {rounds} processes (2 executors x 1 core, Ray with 4 CPUs)")
    medians = {}
    for key in results[0]:
        if key == "total_s":
            continue
        medians[key] = round(median([r[key] for r in results]), 3)
        print(f"  {key:60s} {medians[key]:6.2f} s")
    print("results: " + write_results("startup", f"./dev bench startup {rounds}", rounds=rounds, medians=medians,
                                      per_round=results))


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
