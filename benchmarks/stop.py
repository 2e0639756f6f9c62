"""What `stop_spark` costs when the executors hold every Ray CPU: warm-up on vs off, alternating.

    ./dev bench stop [rounds]       (default 4 per case)

Each round is a new Python process with its own embedded Ray of 2 CPUs and 2 executors x 1
core, so the executors hold every CPU (allowed, and what a small machine does). `stop_spark`
is timed twice per process: right after `init_spark` (the background warm-up still running)
and, in a second session, after the warm-up has finished. The cases alternate (on, off, on,
off, ...); the first process is a warm-up round and not counted. Medians and ratios are
printed; results go to benchmarks/results/stop.json with the date, commit and command.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import child_result, median, ray_init, write_results


def child() -> None:
    import logging

    import ray

    import ftbridge
    from ftbridge.cluster import session

    logging.basicConfig(level=logging.ERROR)
    ray_init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    out = {}
    for when in ("right after init_spark", "after the warm-up"):
        spark = ftbridge.init_spark("stop", num_executors=2, executor_cores=1, executor_memory="1GB")
        spark.sparkContext.setLogLevel("ERROR")
        done = getattr(session.current(), "warm_up_done", None)
        if when == "after the warm-up" and done is not None:
            done.wait(120)
        warmed = done.is_set() if done is not None else None
        t0 = time.perf_counter()
        ftbridge.stop_spark()
        out[when] = time.perf_counter() - t0
        out[f"warm-up finished ({when})"] = warmed
    ray.shutdown()
    print("RESULT " + json.dumps(out))


def main(rounds: int) -> None:
    cases = {"on": [], "off": []}
    order = ["on"] + [case for _ in range(rounds) for case in ("on", "off")]
    for i, case in enumerate(order):
        env = dict(os.environ, FTBRIDGE_WARM_UP="true" if case == "on" else "false")
        result = child_result([sys.executable, __file__, "--child"], env, 600, f"round {i} ({case})")
        print(f"round {i} warm-up {case}: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.items()
                                                       if isinstance(v, float)), flush=True)
        if i > 0:  # round 0 warms the machine's caches (class-sharing archive, page cache)
            cases[case].append(result)
    summary = {}
    print(f"\nstop_spark, medians of {rounds} processes per case (Ray 2 CPUs, 2 executors x 1 core: every CPU held)")
    for when in ("right after init_spark", "after the warm-up"):
        on, off = median([r[when] for r in cases["on"]]), median([r[when] for r in cases["off"]])
        summary[when] = {"warm-up on s": round(on, 3), "warm-up off s": round(off, 3), "on / off": round(on / off, 2)}
        print(f"  {when:24s} warm-up on {on:6.2f} s   off {off:6.2f} s   on/off {on / off:5.2f}")
    path = write_results("stop", f"./dev bench stop {rounds}", rounds_per_case=rounds, summary=summary, rounds=cases)
    print(f"results: {path}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
