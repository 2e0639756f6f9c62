"""The catalog: recording 10,000 partitions (target: under 2 s), direct and through the writer
actor; and how the file grows over 1,000 conversions and what `ftbridge gc --events-older-than`
gives back.

    ./dev bench catalog            # 10,000 partitions
    ./dev bench catalog growth     # 1,000 conversions of 8 partitions and 12 events, then gc
    ./dev bench catalog reports    # what recording a training report costs Ray Train's controller
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))

from _common import ray_init

from ftbridge.lineage import records
from ftbridge.lineage.catalog import Catalog, now
from ftbridge.lineage.rows import ConversionRow, PartitionRow


def conversion_rows(n: int):
    cid = uuid.uuid4().hex
    conv = ConversionRow(conversion_id=cid, name="bench", created_at=now(), status="active", plan_text="",
                         plan_hash="", schema_b64="", storage_level="", spill_root="/tmp", node_local=True,
                         num_partitions=n, total_rows=n, total_bytes=n)
    parts = [PartitionRow(conversion_id=cid, partition_id=i, path=f"/tmp/spill/{cid}/part-{i:05d}.arrow",
                          node_id="n" * 56, num_rows=1000, num_bytes=4096, checksum="c" * 32) for i in range(n)]
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

        from ftbridge.lineage.writer import start_writer
        ray_init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        writer = start_writer(cat)
        writer.pid()
        conv, parts = conversion_rows(n)
        t0 = time.perf_counter()
        writer.record_conversion(conv, parts, [])
        actor = time.perf_counter() - t0
        print(f"{n:,} partitions through the writer actor: {actor:.3f} s (target < 2 s)")
        ray.shutdown()


def growth(n: int = 1000) -> None:
    """Each conversion as the engine records it: one transaction for the conversion and its
    partitions, one per batch of events (reads, a rebuild), one for the release."""
    from datetime import timedelta

    from ftbridge.lineage.kinds import EventKind
    from ftbridge.lineage.retention import file_bytes, prune
    from ftbridge.lineage.rows import new_event

    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalog(os.path.join(tmp, "c.duckdb"))
        t0 = time.perf_counter()
        for i in range(n):
            conv, parts = conversion_rows(8)
            cid = conv.conversion_id
            with cat.write() as con:
                records.insert_conversion(con, conv, parts)
                records.insert_events(con, [new_event(cid, None, EventKind.CREATED, detail="8 partitions")])
            with cat.write() as con:
                records.insert_events(con, [new_event(cid, p, EventKind.READ, node_id="n" * 56,
                                                      detail=f"/tmp/spill/{cid}/part-{p:05d}.arrow")
                                            for p in range(8)]
                                      + [new_event(cid, 3, EventKind.SPILL_MISSING, detail="does not exist"),
                                         new_event(cid, 3, EventKind.REBUILT_FROM_SPARK, detail="rebuilt")])
            with cat.write() as con:
                records.set_conversion_status(con, cid, "released", "released")
                records.insert_events(con, [new_event(cid, None, EventKind.RELEASED, detail="freed")])
            if (i + 1) % 250 == 0:
                print(f"  {i + 1:5d} conversions: catalog {file_bytes(cat.path) / 2**20:.2f} MiB "
                      f"({(time.perf_counter() - t0) / (i + 1) * 1000:.0f} ms per conversion)", flush=True)
        t1 = time.perf_counter()
        report = prune(cat, timedelta(0))
        took = time.perf_counter() - t1
        print(f"{n:,} conversions (8 partitions, 12 events each), all released: "
              f"{report.catalog_bytes_before / 2**20:.2f} MiB; after gc --events-older-than 0s: "
              f"{report.catalog_bytes_after / 2**20:.2f} MiB ({report.partitions_removed:,} partition rows, "
              f"{report.events_removed:,} events removed, {took:.2f} s; the {n:,} conversion rows stay)")


class RunContext:
    """The one field of Ray Train's TrainRunContext the recorder reads."""

    run_id = "bench-ray-run"


def reports(n: int = 300) -> None:
    """`RunRecorder.after_report` in a Ray actor (where Ray Train calls it: its controller), n times:
    the time each report holds the controller, median and worst."""
    import statistics

    import ray

    from ftbridge.lineage.writer import start_writer
    from ftbridge.train.recorder import record_start, recorder

    ray_init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalog(os.path.join(tmp, "c.duckdb"))
        writer = start_writer(cat)
        run_id = uuid.uuid4().hex
        record_start(writer, run_id, "bench", "DataParallelTrainer", None, {})

        @ray.remote(num_cpus=0)
        class Controller:
            def __init__(self, callback):
                self.callback = callback

            def report(self, epoch: int) -> float:
                t0 = time.perf_counter()
                self.callback.after_report(RunContext(), [{"epoch": epoch, "loss": 0.5}], None)
                return time.perf_counter() - t0

        controller = Controller.remote(recorder(run_id, cat.path))
        ray.get(controller.report.remote(-1))  # warm-up: the writer handle, first transaction
        took = [ray.get(controller.report.remote(i)) for i in range(n)]
        writer.flush()
        with cat.read() as con:
            recorded = con.execute("SELECT count(*) FROM run_events WHERE kind = 'report'").fetchone()[0]
        ray.shutdown()
        print(f"{n} reports recorded ({recorded} in the catalog): median {statistics.median(took) * 1000:.1f} ms, "
              f"worst {max(took) * 1000:.1f} ms per report in the controller (the workers do not wait for it)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "reports":
        reports()
    elif len(sys.argv) > 1 and sys.argv[1] == "growth":
        growth(int(sys.argv[2]) if len(sys.argv) > 2 else 1000)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
