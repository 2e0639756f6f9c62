"""Materialized vs streaming recoverable Datasets on a conversion larger than Ray's object store.

    ./dev bench streaming [--rounds 3] [--rows 13000000] [--store-mb 200] [--epochs 4]

Each round runs both modes, one fresh Python process each (their order alternates between
rounds), with its own embedded Ray whose object store is `--store-mb`, Spark on it (2
executors x 1 core), one conversion of `--rows` rows (about 3x the object store), then
`--epochs` passes of `iter_batches` over it, as a training loop would.

Per mode: conversion seconds, first epoch, median of the later epochs, peak object-store
memory (pages ever used in the plasma file, read from the raylet's mapping: a high-water mark,
which is why every mode gets its own process), peak bytes Ray spilled to disk (sampled), peak
driver RSS. Medians over rounds; the ratio line is streaming / materialized.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import PeakRss, alternating, median, ray_init, run_elsewhere

MODES = ("materialized", "streaming")


def _raylet_pid() -> int | None:
    """The raylet this process's embedded Ray started (a child of this process)."""
    me = str(os.getpid())
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as f:
                argv = f.read().split(b"\0")
            with open(path.replace("cmdline", "status")) as f:
                ppid = next(line.split()[1] for line in f if line.startswith("PPid:"))
        except (OSError, StopIteration):
            continue
        if argv and argv[0].endswith(b"raylet") and ppid == me:
            return int(path.split("/")[2])
    return None


def _plasma_bytes(pid: int) -> int:
    """Bytes of the object store's shared-memory files ever touched (their allocated blocks)."""
    seen, total = set(), 0
    with open(f"/proc/{pid}/maps") as f:
        ranges = [line.split()[0] for line in f if "/plasma" in line]
    for r in ranges:
        st = os.stat(f"/proc/{pid}/map_files/{r}")
        if st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_blocks * 512
    return total


class SpillSampler:
    """Peak bytes under Ray's spill folders (sampled every 100 ms)."""

    def __init__(self, roots: list[str]) -> None:
        self.roots, self.peak = roots, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _size(self) -> int:
        total = 0
        for root in self.roots:
            for folder, _, files in os.walk(root):
                for name in files:
                    try:
                        total += os.path.getsize(os.path.join(folder, name))
                    except OSError:
                        pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self._size())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._size())


def child(mode: str, rows: int, store_mb: int, epochs: int) -> None:
    import logging

    import ray

    import ftbridge

    logging.basicConfig(level=logging.ERROR)
    spill_root = os.path.join(os.environ["BENCH_TMP"], "ray-spill")
    ray_init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             object_store_memory=store_mb << 20,
             _system_config={"object_spilling_config": json.dumps(
                 {"type": "filesystem", "params": {"directory_path": spill_root}})})
    raylet = _raylet_pid()
    spark = ftbridge.init_spark("streaming-bench", num_executors=2, executor_cores=1, executor_memory="2GB")
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.range(0, rows, numPartitions=16).selectExpr(
        "id", "id * 7 as a", "cast(id as double) / 3 as b", "concat('row-', cast(id as string), '-abcdefgh') as s")
    spills = SpillSampler([spill_root])
    with PeakRss() as rss:
        t0 = time.perf_counter()
        ds = ftbridge.from_spark_recoverable(df, name=mode, materialize=mode == "materialized")
        convert_s = time.perf_counter() - t0
        epoch_s, seen = [], []
        for _ in range(epochs):
            t0, n = time.perf_counter(), 0
            for batch in ds.iter_batches(batch_size=65536, batch_format="pyarrow"):
                n += batch.num_rows
            epoch_s.append(time.perf_counter() - t0)
            seen.append(n)

    spilled = spills.stop()
    store = _plasma_bytes(raylet) if raylet else -1
    from ftbridge.lineage.catalog import Catalog  # the conversion's recorded size

    total_bytes = Catalog().load(ftbridge.conversion_id(ds))[0]["total_bytes"]
    ftbridge.release(ds)
    del ds
    ftbridge.stop_spark()
    ray.shutdown()
    if any(n != rows for n in seen):
        sys.exit(f"{mode}: epochs saw {seen} rows, expected {rows} each")
    print("RESULT " + json.dumps({"mode": mode, "convert_s": convert_s, "first_epoch_s": epoch_s[0],
                                  "epoch_s": median(epoch_s[1:]) if len(epoch_s) > 1 else epoch_s[0],
                                  "store_peak_mb": store / 2**20, "spilled_peak_mb": spilled / 2**20,
                                  "driver_rss_mb": rss.peak / 2**20, "data_mb": total_bytes / 2**20}))


def run_child(mode: str, args, tmp: str) -> dict:
    env = dict(os.environ, BENCH_TMP=tmp, FTBRIDGE_CATALOG=os.path.join(tmp, "catalog.duckdb"),
               FTBRIDGE_SPILL_DIR=os.path.join(tmp, "spill"))
    proc = run_elsewhere([sys.executable, os.path.abspath(__file__), "--child", mode, "--rows", str(args.rows), "--store-mb",
                           str(args.store_mb), "--epochs", str(args.epochs)], capture_output=True, text=True,
                          timeout=1800, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{mode} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=13_000_000)
    parser.add_argument("--store-mb", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="1 round, 3M rows, 100 MB store, 3 epochs")
    parser.add_argument("--child", choices=MODES)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.rows, args.store_mb, args.epochs = 1, 3_000_000, 100, 3
    if args.child:
        return child(args.child, args.rows, args.store_mb, args.epochs)
    results: dict = {m: [] for m in MODES}
    tmp_root = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"ftbridge-bench-streaming-{os.getpid()}")
    try:
        for i, mode, _ in alternating(MODES, args.rounds):
            tmp = os.path.join(tmp_root, f"{mode}-{i}")
            os.makedirs(tmp)
            r = run_child(mode, args, tmp)
            shutil.rmtree(tmp, ignore_errors=True)
            results[mode].append(r)
            print(f"round {i} {mode}: convert {r['convert_s']:.2f} s, epochs {r['first_epoch_s']:.2f} / "
                  f"{r['epoch_s']:.2f} s, store peak {r['store_peak_mb']:.0f} MB, spilled peak "
                  f"{r['spilled_peak_mb']:.0f} MB, driver RSS {r['driver_rss_mb']:.0f} MB", flush=True)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    keys = ("convert_s", "first_epoch_s", "epoch_s", "store_peak_mb", "spilled_peak_mb", "driver_rss_mb")
    med = {m: {k: median([r[k] for r in results[m]]) for k in keys} for m in MODES}
    data_mb = results[MODES[0]][0]["data_mb"]
    print(f"\n{args.rows:,} rows = {data_mb:.0f} MB of Arrow data; object store {args.store_mb} MB "
          f"({data_mb / args.store_mb:.1f}x); {args.epochs} epochs; medians over {args.rounds} rounds")
    print(f"{'mode':<14}{'convert s':>11}{'epoch 1 s':>11}{'epoch s':>10}{'store peak MB':>15}"
          f"{'spilled MB':>12}{'driver RSS MB':>15}")
    for m in MODES:
        v = med[m]
        print(f"{m:<14}{v['convert_s']:>11.2f}{v['first_epoch_s']:>11.2f}{v['epoch_s']:>10.2f}"
              f"{v['store_peak_mb']:>15.0f}{v['spilled_peak_mb']:>12.0f}{v['driver_rss_mb']:>15.0f}")
    ratio = {k: med["streaming"][k] / med["materialized"][k] if med["materialized"][k] else float("nan")
             for k in keys}
    print(f"{'stream/mat.':<14}{ratio['convert_s']:>11.2f}{ratio['first_epoch_s']:>11.2f}{ratio['epoch_s']:>10.2f}"
          f"{ratio['store_peak_mb']:>15.2f}{ratio['spilled_peak_mb']:>12.2f}{ratio['driver_rss_mb']:>15.2f}")


if __name__ == "__main__":
    main()
