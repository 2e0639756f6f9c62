"""A PySpark + ftbridge script that tests/hosts/test_jobs.py submits as a Ray Job, run by
`ftbridge submit` as docs/guide/multi-node.md says (`ray job submit -- ftbridge submit ... job.py MODE`).

- `convert`: a recoverable conversion read back and checked row by row (ids + content), then
  released; prints one `RESULT {json}` line and exits 0 only if nothing was lost.
- `hold`: writes `$FTBRIDGE_HOSTS_SHARED/job-ready` (its executors) and waits to be stopped.
"""

from __future__ import annotations

import json
import os
import sys
import time

from pyspark.sql import SparkSession

import ftbridge
from ftbridge.convert.ops.rowcheck import check, read_all, spark_to_arrow

HOLD_S = 300.0


def main(mode: str) -> int:
    spark = SparkSession.builder.getOrCreate()
    if mode == "convert":
        df = spark.range(0, 100_000, numPartitions=4).selectExpr("id", "sha1(cast(id as string)) as h")
        reference = spark_to_arrow(df)
        ds = ftbridge.from_spark_recoverable(df)
        result = check(reference, read_all(ds))
        freed = ftbridge.release(ds)
        print("RESULT " + json.dumps({"ok": result.ok, "result": str(result), "freed": freed,
                                      "checksum_ok": result.checksum_read == result.checksum_expected}), flush=True)
        return 0 if result.ok else 1
    executors = [e.to_dict() for e in ftbridge.executors()]
    ready = os.path.join(os.environ["FTBRIDGE_HOSTS_SHARED"], "job-ready")
    with open(ready + ".tmp", "w") as f:
        json.dump({"pid": os.getpid(), "executors": executors}, f)
    os.rename(ready + ".tmp", ready)
    time.sleep(HOLD_S)  # `ray job stop` ends it long before this
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
