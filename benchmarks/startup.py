"""Time to init_spark and to the first job, three rounds in one process.

    ./dev bench startup
"""

from __future__ import annotations

import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import median  # noqa: E402

import ray  # noqa: E402

import ftbridge  # noqa: E402


def main(rounds: int = 3) -> None:
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray_s = time.perf_counter() - t0
    inits, firsts = [], []
    for i in range(rounds):
        t0 = time.perf_counter()
        spark = ftbridge.init_spark(f"startup-{i}", num_executors=2, executor_cores=1, executor_memory="1GB")
        inits.append(time.perf_counter() - t0)
        spark.sparkContext.setLogLevel("ERROR")
        t0 = time.perf_counter()
        assert spark.range(0, 10**6).repartition(10).count() == 10**6
        firsts.append(time.perf_counter() - t0)
        ftbridge.stop_spark()
    print(f"ray.init (embedded local Ray): {ray_s:.2f} s")
    print("round  init_spark_s  first_job_s")
    for i, (a, b) in enumerate(zip(inits, firsts)):
        print(f"{i:5d}  {a:12.2f}  {b:11.2f}")
    print(f"median init_spark {median(inits):.2f} s, first job {median(firsts):.2f} s "
          f"(RayDP 1.6.5 init_spark measured here: 10-16 s)")
    ray.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
