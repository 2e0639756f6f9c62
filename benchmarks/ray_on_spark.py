"""Ray on an existing Spark cluster: ftbridge vs the Parquet hand-off vs driver collect.

    ./dev bench ray_on_spark [ROWS[,ROWS...]] [REPS] [ray|kept|both] [WARMUP]
        (default 1,000,000 rows, 3 rounds, both pools, 1 warm-up round; needs root)

The topology of tests/hosts/test_ray_on_spark.py (chaos/hosts.py `Hosts(spark=True)`): a Spark
standalone master on the head host and two worker hosts of 3 cores, each with its own address,
disk and processes, started with Spark's own launcher; the driver on the head host starts Ray on
that cluster with `setup_ray_cluster` (a 2-CPU Ray worker node per worker host) and runs
benchmarks/_ray_on_spark_driver.py: WARMUP warm-up rounds, then REPS rounds alternating the order
of the three paths over one cached DataFrame (long, double, string; 8 partitions) of each row
count. Medians, the driver's RSS after each path (collect holds the whole table there) and the
ratios ftbridge/collect and ftbridge/parquet are printed, with ftbridge's parts (convert, count,
release), ftbridge's own timing of every conversion (spill, catalog, read) and a traced
conversion (which reads ran on their file's node and which through a fetch task there, and when
each started), for each of Ray's worker-pool settings asked for (`ray`: as `setup_ray_cluster`
leaves them; `kept`: the head's system config keeping idle workers, ftbridge's
WORKER_POOL_CONFIG; `both`: one Ray cluster after the other on the same Spark session), and go to
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

    usage = "usage: ./dev bench ray_on_spark [ROWS[,ROWS...] >= 1] [REPS >= 1] [ray|kept|both] [WARMUP >= 0]"
    try:
        rows = [int(x) for x in sys.argv[1].split(",")] if len(sys.argv) > 1 else [1_000_000]
        reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
        warmup = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    except ValueError:
        sys.exit(usage)
    pool = sys.argv[3] if len(sys.argv) > 3 else "both"
    if not rows or min(rows) < 1 or reps < 1 or warmup < 0 or pool not in ("ray", "kept", "both"):
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
        spec = {"master": env.spark_master, "rows": rows, "partitions": 8, "warmup": warmup, "reps": reps,
                "shared": env.shared, "pools": pools}
        # The 30 min it always had, and about 20 s more per million rows and round on this topology,
        # all paths (the Parquet hand-off most).
        bound = 1800 + 20 * len(pools) * (warmup + reps + 1) * sum(max(1, r // 1_000_000) for r in rows)
        proc = env.run_on_head([sys.executable, os.path.join(ROOT, "benchmarks", "_ray_on_spark_driver.py"),
                                json.dumps(spec)], timeout_s=bound, check=False,
                               env={"PYTHONPATH": os.pathsep.join([ROOT, path]), "FTBRIDGE_SPILL_DIR": "",
                                    "FTBRIDGE_LOG_DIR": ""})
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.exit(f"the driver failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        result = json.loads(line[len("RESULT "):])
        # ftbridge's own timing line (spill, catalog, read) of every conversion of each case: the
        # warm-up's, each round's, then the traced one's (the last).
        cases = {(c["pool"], c["rows"]): c for c in result["cases"]}
        seen: list[str] = []
        for x in proc.stderr.splitlines():
            if "ftbridge.convert.conversion conversion " in x:
                seen.append(x.split(": ", 1)[-1])
            for (name, n), case in cases.items():
                if x.startswith(f"{name} {n}: the last conversion's timing follows"):
                    case["ftbridge_last_conversion"] = seen[-1] if seen else None
                    case["ftbridge_conversions"] = seen
                    seen = []
    finally:
        env.close()
    print(f"8 partitions, {reps} rounds after {warmup} warm-up rounds (Spark {result['spark']}, Ray {result['ray']})")
    for res in result["cases"]:
        print(f" {res['rows']:,} rows, Ray's worker pool: {res['pool']} ({res['nodes']} Ray nodes)")
        for name, med in res["median_s"].items():
            runs = " / ".join(f"{t:.2f}" for t in res["times_s"][name])
            print(f"  {name:9s} median {med:6.2f} s   ({runs})   driver RSS {max(res['driver_rss_mib'][name]):.0f} MiB")
        for i, timing in enumerate(res.get("ftbridge_conversions") or []):
            label = "warm-up" if i < warmup else f"round {i - warmup + 1}" if i < warmup + reps else "traced"
            print(f"  ftbridge {label:8s} {timing.split('; ', 1)[-1]}")
        print(f"  ftbridge's parts (medians): {res.get('ftbridge_parts_median_s')}")
        trace = res.get("read_trace") or {}
        print(f"  reads on the file's node: {trace.get('local_reads')} (median {trace.get('local_median_s')} s), "
              f"through a fetch task on it: {trace.get('fetched_reads')} (median {trace.get('fetched_median_s')} s)")
        print(f"  ftbridge / collect {res['ratio_ftbridge_to_collect']:.2f}x, "
              f"ftbridge / parquet {res['ratio_ftbridge_to_parquet']:.2f}x")
    command = f"./dev bench ray_on_spark {','.join(map(str, rows))} {reps} {pool}" + (f" {warmup}" if warmup != 1 else "")
    out = write_results("ray_on_spark", command, rows=rows, reps=reps, warmup=warmup, **result)
    print(f"results: {out}")


if __name__ == "__main__":
    main()
