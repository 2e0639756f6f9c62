"""What Spark RPC encryption (`init_spark(..., encrypt=True)`) costs: off vs on, alternating.

    ./dev bench encryption [--rows N] [--reps K] [--quick]     (default 4M rows, 5 processes per case)

Each round is a new Python process with its own embedded Ray (4 CPUs) and Spark on it (2
executors x 1 core), authenticated in both cases; only `encrypt` differs. In each process, after
one untimed conversion: a Spark -> Ray conversion (`from_spark_recoverable`, materialised) and a
shuffle-heavy Spark query (group by over every row, whose shuffle blocks cross the encrypted
executor links), the medians of 3 runs each. The cases alternate (off, on, off, ...); the first
process is a warm-up round and not counted. Medians and ratios are printed; results go to
benchmarks/results/encryption.json with the date, commit and command.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _common import bench_session, child_result, median, size_args, timed, write_results


def child(rows: int, encrypt: bool) -> None:
    import ray
    from pyspark import StorageLevel

    import ftbridge

    spark = bench_session(encrypt=encrypt)
    df = spark.range(0, rows, numPartitions=8).selectExpr("id", "id * 7 % 1000 as k", "rand(1) as v",
                                                          "concat('row-', cast(id as string)) as s")

    def convert():
        ds = ftbridge.from_spark_recoverable(df, StorageLevel.NONE)
        ftbridge.release(ds)

    def shuffle():
        return df.repartition(8, "k").groupBy("k").agg({"v": "sum", "s": "max"}).collect()

    convert()  # untimed: the first conversion starts Ray Data's workers
    out = {"conversion s": median([timed(convert)[0] for _ in range(3)]),
           "shuffle query s": median([timed(shuffle)[0] for _ in range(3)])}
    ftbridge.stop_spark()
    ray.shutdown()
    print("RESULT " + json.dumps(out))


def main() -> None:
    args = size_args()
    rounds = args.reps
    cases = {"off": [], "on": []}
    order = ["off"] + [case for _ in range(rounds) for case in ("off", "on")]
    for i, case in enumerate(order):
        result = child_result([sys.executable, __file__, "--child", str(args.rows), case], dict(os.environ), 900,
                              f"round {i} (encrypt {case})")
        print(f"round {i} encrypt {case}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()), flush=True)
        if i > 0:  # round 0 warms the machine's caches (class-sharing archive, page cache)
            cases[case].append(result)
    summary = {}
    print(f"\nencrypt off vs on, medians of {rounds} processes per case ({args.rows:,} rows; 2 executors x 1 core)")
    for what in ("conversion s", "shuffle query s"):
        off, on = median([r[what] for r in cases["off"]]), median([r[what] for r in cases["on"]])
        summary[what] = {"off": round(off, 3), "on": round(on, 3), "on / off": round(on / off, 2)}
        print(f"  {what:16s} off {off:6.2f}   on {on:6.2f}   on/off {on / off:5.2f}")
    command = "./dev bench encryption " + " ".join(sys.argv[1:])
    path = write_results("encryption", command.strip(), rows=args.rows, rounds_per_case=rounds, summary=summary,
                         rounds=cases)
    print(f"results: {path}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(int(sys.argv[2]), sys.argv[3] == "on")
    else:
        main()
