"""Ray on an existing Spark cluster: ftbridge vs the Parquet hand-off vs driver collect.

    ./dev bench ray_on_spark [ROWS] [REPS] [ray|kept|both]
        (default 1,000,000 rows, 3 rounds, both pools; needs root)

The topology of tests/hosts/test_ray_on_spark.py (chaos/hosts.py `Hosts(spark=True)`): a Spark
standalone master on the head host and two worker hosts of 3 cores, each with its own address,
disk and processes, started with Spark's own launcher; the driver on the head host starts Ray on
that cluster with `setup_ray_cluster` (a 2-CPU Ray worker node per worker host) and runs
benchmarks/_ray_on_spark_driver.py: one warm-up round, then REPS rounds alternating the order
of the three paths over one cached DataFrame (long, double, string; 8 partitions). Medians and
the ratios ftbridge/collect and ftbridge/parquet are printed, with ftbridge's parts (convert,
count, release) and a traced conversion (which reads ran on their file's node and which through
a fetch task there, and when each started), for each of Ray's worker-pool
settings asked for (`ray`: as `setup_ray_cluster` leaves them; `kept`: the head's system config
keeping idle workers, ftbridge's WORKER_POOL_CONFIG; `both`: one Ray cluster after the other on
the same Spark session), and go to
benchmarks/results/ray_on_spark.json with the date, commit and command.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import write_results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    from ftbridge.chaos import hosts as hostlib
    from tests.hosts import overlay

    usage = "usage: ./dev bench ray_on_spark [ROWS >= 1] [REPS >= 1] [ray|kept|both]"
    try:
        rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
        reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    except ValueError:
        sys.exit(usage)
    pool = sys.argv[3] if len(sys.argv) > 3 else "both"
    if rows < 1 or reps < 1 or pool not in ("ray", "kept", "both"):
        sys.exit(usage)
    pools = ["ray", "kept"] if pool == "both" else [pool]
    why = hostlib.available()
    if why:
        sys.exit(f"ray_on_spark needs namespaced hosts: {why}")
    path = os.environ.get("FTBRIDGE_RAY_CLIENT_OVERLAY", "")
    problem = overlay.ready(path, "client") if path else "FTBRIDGE_RAY_CLIENT_OVERLAY is not set: run ./dev bench"
    if problem:
        sys.exit(problem)
    env = hostlib.Hosts(workers=2, worker_cpus=3, spark=True, spark_worker_memory="4g", object_store_mb=600,
                        env={"PYTHONPATH": path}).start()
    try:
        spec = {"master": env.spark_master, "rows": rows, "partitions": 8, "warmup": 1, "reps": reps,
                "shared": env.shared, "pools": pools}
        proc = env.run_on_head([sys.executable, os.path.join(ROOT, "benchmarks", "_ray_on_spark_driver.py"),
                                json.dumps(spec)], timeout_s=1800, check=False,
                               env={"PYTHONPATH": os.pathsep.join([ROOT, path]), "FTBRIDGE_SPILL_DIR": "",
                                    "FTBRIDGE_LOG_DIR": ""})
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.exit(f"the driver failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        result = json.loads(line[len("RESULT "):])
        # ftbridge's own timing line (spill, catalog, read) of each pool's last conversion.
        last = None
        for x in proc.stderr.splitlines():
            if "ftbridge.convert.conversion conversion " in x:
                last = x.split(": ", 1)[-1]
            for name in pools:
                if x.startswith(f"{name}: the last conversion's timing follows"):
                    result["pools"][name]["ftbridge_last_conversion"] = last
    finally:
        env.close()
    print(f"{rows:,} rows, 8 partitions, {reps} rounds after a warm-up (Spark {result['spark']}, Ray {result['ray']})")
    for name, res in result["pools"].items():
        print(f" Ray's worker pool: {name} ({res['nodes']} Ray nodes)")
        for path, med in res["median_s"].items():
            runs = " / ".join(f"{t:.2f}" for t in res["times_s"][path])
            print(f"  {path:9s} median {med:6.2f} s   ({runs})   driver RSS {max(res['driver_rss_mib'][path]):.0f} MiB")
        print(f"  ftbridge's last conversion: {res.get('ftbridge_last_conversion')}")
        print(f"  ftbridge's parts (medians): {res.get('ftbridge_parts_median_s')}")
        trace = res.get("read_trace") or {}
        print(f"  reads on the file's node: {trace.get('local_reads')} (median {trace.get('local_median_s')} s), "
              f"through a fetch task on it: {trace.get('fetched_reads')} (median {trace.get('fetched_median_s')} s)")
        print(f"  ftbridge / collect {res['ratio_ftbridge_to_collect']:.2f}x, "
              f"ftbridge / parquet {res['ratio_ftbridge_to_parquet']:.2f}x")
    out = write_results("ray_on_spark", f"./dev bench ray_on_spark {rows} {reps} {pool}", rows=rows, reps=reps,
                        **result)
    print(f"results: {out}")


if __name__ == "__main__":
    main()
