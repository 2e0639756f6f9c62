"""Recording 10,000 partitions in the catalog (target: under 2 s), direct and through the writer actor.

    ./dev bench catalog
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))

from lineage import records  # noqa: E402
from lineage.catalog import Catalog, now  # noqa: E402


def conversion_rows(n: int):
    cid = uuid.uuid4().hex
    conv = {"conversion_id": cid, "name": "bench", "created_at": now(), "status": "active", "plan_text": "",
            "plan_hash": "", "schema_b64": "", "storage_level": "", "spill_root": "/tmp", "node_local": True,
            "num_partitions": n, "total_rows": n, "total_bytes": n}
    parts = [{"partition_id": i, "path": f"/tmp/spill/{cid}/part-{i:05d}.arrow", "node_id": "n" * 56,
              "num_rows": 1000, "num_bytes": 4096, "checksum": "c" * 32} for i in range(n)]
    return conv, parts


def main(n: int = 10_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalog(os.path.join(tmp, "c.duckdb"))
        with cat.write():
            pass
        conv, parts = conversion_rows(n)
        t0 = time.perf_counter()
        with cat.write() as con:
            records.insert_conversion(con, conv, parts)
        direct = time.perf_counter() - t0
        print(f"{n:,} partitions, one transaction, direct: {direct:.3f} s (target < 2 s)")

        import ray

        from lineage.writer import call, get_writer
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        writer = get_writer(cat)
        call(writer, "pid")
        conv, parts = conversion_rows(n)
        t0 = time.perf_counter()
        call(writer, "record_conversion", conv, parts, [])
        actor = time.perf_counter() - t0
        print(f"{n:,} partitions through the writer actor: {actor:.3f} s (target < 2 s)")
        ray.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
